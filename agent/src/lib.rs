//! The agent: eBPF capture of socket traffic turned into OpenTelemetry spans.
//!
//! See ARCHITECTURE.md for the path of one request, file by file.

pub mod bpf;
pub mod capture;
pub mod clock;
pub mod config;
pub mod conn;
pub mod correlate;
pub mod doctor;
pub mod export;
pub mod intern;
pub mod kube;
pub mod node;
pub mod pipeline;
pub mod protocol;
pub mod red;
pub mod resource;
pub mod run;
pub mod selection;
pub mod span;
pub mod telemetry;
