//! HTTP/1.x message parser (to be written).
