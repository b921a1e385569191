//! Selection in the kernel: what userspace tells the programs about the
//! processes and ports the user chose not to trace.
//!
//! - `SELECT_FLAGS` (a load-time global) says which filters are active, so
//!   an agent without selection pays no lookup;
//! - `PORT_SELECT` (array indexed by port) holds [`PortSelect`] bits: a
//!   connection is dropped at its announcement (before any record) when
//!   either port is excluded, or when include ports are set and neither
//!   port is included;
//! - `PROC_EXCLUDED` (LRU hash by tgid) holds the processes userspace
//!   decided not to trace: every data program returns at its top for them.
//!   A fork inherits the parent's entry; an exec clears it (the new program
//!   is decided again).

/// Bits of the `SELECT_FLAGS` global.
pub struct SelectFlags;

impl SelectFlags {
    /// `PORT_SELECT` holds include bits: a connection needs one.
    pub const PORTS_INCLUDE: u32 = 1;
    /// `PORT_SELECT` holds exclude bits.
    pub const PORTS_EXCLUDE: u32 = 2;
    /// `PROC_EXCLUDED` is maintained (process rules are set).
    pub const PROCESSES: u32 = 4;
}

/// Values of the `PORT_SELECT` array.
pub struct PortSelect;

impl PortSelect {
    pub const INCLUDED: u8 = 1;
    pub const EXCLUDED: u8 = 2;
}

/// Entries of `PORT_SELECT`: one per port.
pub const PORT_SELECT_ENTRIES: u32 = 65_536;

/// Capacity of `PROC_EXCLUDED`.
pub const MAX_PROC_EXCLUDED: u32 = 32_768;
