//! OTLP export (later).
