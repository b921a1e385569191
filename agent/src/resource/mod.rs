//! Process and host resources (to be written).
