//! HTTP/1.x: `parser` frames one direction of a connection into messages;
//! `session` pairs requests with responses into exchanges.

pub mod parser;
pub mod session;
