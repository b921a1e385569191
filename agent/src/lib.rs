//! The agent: eBPF capture of socket traffic turned into OpenTelemetry spans.
//!
//! See ARCHITECTURE.md for the path of one request, file by file.

pub mod bpf;
pub mod capture;
pub mod protocol;
pub mod resource;
