//! Reading what the kernel captured.
//!
//! - `record`: decodes ring-buffer bytes into typed, borrowed records;
//! - `ring`: the async ring-buffer reader (epoll readiness + a short poll
//!   timer, since the kernel batches wakeups).

pub mod record;
pub mod ring;

pub use record::{ConnClose, ConnOpen, DataEvent, ProcExit, ProcInfo, Record};
