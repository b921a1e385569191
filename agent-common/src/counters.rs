//! Kernel-side counters: indexes into the per-CPU `COUNTERS` array.
//!
//! The kernel counts its own losses here; userspace sums the per-CPU values
//! and exports them (`agent_kernel_*` metrics).

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A record could not be written: the ring buffer was full.
    RingbufFull = 0,
    /// A data record carried fewer bytes than the syscall moved.
    PayloadTruncated = 1,
    /// The connection map was full; a socket could not be tracked.
    ConnMapFull = 2,
    /// The in-flight syscall map was full; one syscall was not captured.
    InflightMapFull = 3,
    /// Reading user or kernel memory faulted.
    ReadFault = 4,
    /// Data records written.
    DataRecords = 5,
    /// Connection open/close records written.
    ConnRecords = 6,
    /// Data syscalls on tracked sockets whose bytes did not look like a
    /// supported protocol (not sent to userspace).
    Unclassified = 7,
    /// Payload bytes copied into data records.
    PayloadBytes = 8,
    /// Process exit records written.
    ProcRecords = 9,
    /// Iovecs beyond `MAX_IOVECS` that were not copied.
    IovecsSkipped = 10,
    /// Process snapshot records written.
    ProcInfoRecords = 11,
    /// Connections to one of the agent's own sockets (a local collector
    /// receiving the agent's export), ignored in the kernel.
    AgentOwnTraffic = 12,
    /// Syscalls of processes excluded by the selection, skipped at the top
    /// of the programs (no map entry, no record).
    SelectionSkippedSyscalls = 13,
    /// Connections dropped at their announcement because of their ports
    /// (selection), before any record.
    SelectionIgnoredConnections = 14,
    /// Connections whose bytes are TLS records (encrypted: never
    /// parseable from syscalls), ignored in the kernel from then on.
    TlsIgnored = 15,
    /// Connections the kernel stopped classifying after their limit of
    /// data syscalls of no supported protocol (`capture.classify_attempts`).
    UnclassifiedGivenUp = 16,
}

pub const COUNTER_COUNT: u32 = 17;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::RingbufFull,
        Counter::PayloadTruncated,
        Counter::ConnMapFull,
        Counter::InflightMapFull,
        Counter::ReadFault,
        Counter::DataRecords,
        Counter::ConnRecords,
        Counter::Unclassified,
        Counter::PayloadBytes,
        Counter::ProcRecords,
        Counter::IovecsSkipped,
        Counter::ProcInfoRecords,
        Counter::AgentOwnTraffic,
        Counter::SelectionSkippedSyscalls,
        Counter::SelectionIgnoredConnections,
        Counter::TlsIgnored,
        Counter::UnclassifiedGivenUp,
    ];

    /// Name of the counter in the agent's metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RingbufFull => "ringbuf_full",
            Counter::PayloadTruncated => "payload_truncated",
            Counter::ConnMapFull => "conn_map_full",
            Counter::InflightMapFull => "inflight_map_full",
            Counter::ReadFault => "read_fault",
            Counter::DataRecords => "data_records",
            Counter::ConnRecords => "conn_records",
            Counter::Unclassified => "unclassified",
            Counter::PayloadBytes => "payload_bytes",
            Counter::ProcRecords => "proc_records",
            Counter::IovecsSkipped => "iovecs_skipped",
            Counter::ProcInfoRecords => "proc_info_records",
            Counter::AgentOwnTraffic => "agent_own_traffic",
            Counter::SelectionSkippedSyscalls => "selection_skipped_syscalls",
            Counter::SelectionIgnoredConnections => "selection_ignored_connections",
            Counter::TlsIgnored => "tls_ignored",
            Counter::UnclassifiedGivenUp => "unclassified_given_up",
        }
    }

    /// Whether the counter counts something lost (as opposed to work done).
    pub const fn is_loss(self) -> bool {
        matches!(
            self,
            Counter::RingbufFull
                | Counter::PayloadTruncated
                | Counter::ConnMapFull
                | Counter::InflightMapFull
                | Counter::ReadFault
                | Counter::IovecsSkipped
        )
    }
}
