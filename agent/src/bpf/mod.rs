//! Loading and attaching the eBPF programs, and reading their maps.
//!
//! - `offsets`: kernel struct offsets from BTF (for the fd → socket walk);
//! - `tracefs`: mounting tracefs and reading tracepoint formats;
//! - `loader`: load the embedded object, set its globals, attach programs;
//! - `counters`: the kernel's loss and work counters;
//! - `select`: the selection maps (ports, excluded processes);
//! - `conns`: the kernel connection map (ignore a connection, sweep stale
//!   entries).

pub mod attach;
pub mod conns;
pub mod counters;
pub mod loader;
pub mod offsets;
pub mod select;
pub mod tracefs;

pub use loader::{Capture, LoadOptions};

/// Errors of the eBPF layer. Each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "the agent must run as root (or with CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and \
         CAP_SYS_ADMIN for tracefs); effective uid is {0}"
    )]
    NotRoot(u32),
    #[error(
        "cannot read kernel BTF at {path}: {reason} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)"
    )]
    Btf { path: String, reason: String },
    #[error("kernel BTF has no field {type_name}.{field}: unsupported kernel layout")]
    BtfField { type_name: String, field: String },
    #[error("tracefs is not available and mounting it at {path} failed: {source}")]
    Tracefs {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tracepoint {category}:{name} is missing or has an unexpected layout: {reason}")]
    TracepointFormat {
        category: String,
        name: String,
        reason: String,
    },
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("loading eBPF program {program} failed: {source}")]
    Program {
        program: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {program} to {category}:{name} failed: {source}")]
    Attach {
        program: String,
        category: String,
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("reading the agent's network namespace (/proc/self/ns/net): {0}")]
    OwnNetns(std::io::Error),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("invalid option: {0}")]
    Option(String),
}
