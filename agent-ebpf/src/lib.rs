//! The programs are in `main.rs` (a `bpfel-unknown-none` binary built by
//! `agent/build.rs`). This library target exists so the agent can depend on
//! this crate and be rebuilt when the programs change.
#![no_std]
