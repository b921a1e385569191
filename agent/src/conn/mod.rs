//! Connections userspace follows: their addresses, role, owning process and
//! protocol session.
//!
//! - `table`: connections by (process, socket), bounded;
//! - `own_sockets`: the agent's own sockets, so the receiving side of the
//!   agent's exports is not traced (no span feedback loop).

pub mod own_sockets;
pub mod table;

pub use table::{Conn, ConnTable};
