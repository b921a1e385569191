//! Process metrics (later).
