//! Protocol parsers (sans-IO, over bytes) and the per-connection sessions
//! that turn parsed messages into request/response exchanges. Each protocol
//! mirrors its kernel-side classifier in `agent-common/src/classify.rs`.

pub mod http1;
