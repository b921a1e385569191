//! Process lifecycle counts from sched tracepoints: indexes into the
//! per-CPU `SCHED_STATS` array (`agent-ebpf/src/sched.rs`), summed by
//! userspace (`agent/src/node/sched.rs`).

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedStat {
    /// Tasks created (`sched_process_fork`: processes and threads).
    Fork = 0,
    /// Programs executed (`sched_process_exec`).
    Exec = 1,
    /// Processes that exited (`sched_process_exit` of the last thread).
    Exit = 2,
    /// Threads that exited while their process went on.
    ThreadExit = 3,
}

pub const SCHED_STAT_COUNT: u32 = 4;

impl SchedStat {
    pub const ALL: [SchedStat; SCHED_STAT_COUNT as usize] = [
        SchedStat::Fork,
        SchedStat::Exec,
        SchedStat::Exit,
        SchedStat::ThreadExit,
    ];

    /// The `event` label in the agent's metrics.
    pub const fn name(self) -> &'static str {
        match self {
            SchedStat::Fork => "fork",
            SchedStat::Exec => "exec",
            SchedStat::Exit => "exit",
            SchedStat::ThreadExit => "thread_exit",
        }
    }
}
