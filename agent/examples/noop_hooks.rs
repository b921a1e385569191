//! No-op eBPF programs on the capture's hook points until killed, for
//! `cargo xtask bench hooks`: `noop_hooks tracepoints|raw`. Prints
//! `ready: N programs` on stderr once attached.

use agent::bpf::loader::{NoopHooks, NoopMode};

fn main() -> std::process::ExitCode {
    let mode = match std::env::args().nth(1).as_deref() {
        Some("tracepoints") => NoopMode::Tracepoints,
        Some("raw") => NoopMode::RawSyscalls,
        _ => {
            eprintln!("usage: noop_hooks tracepoints|raw");
            return std::process::ExitCode::from(2);
        }
    };
    match NoopHooks::attach(mode) {
        Ok(hooks) => {
            eprintln!("ready: {} programs", hooks.attached);
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("noop_hooks: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
