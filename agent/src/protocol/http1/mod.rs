//! HTTP/1.x: `parser` frames one direction of a connection into messages.

pub mod parser;
