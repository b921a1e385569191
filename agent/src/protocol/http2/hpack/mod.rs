//! HPACK (RFC 7541) header block decoding, sans-IO, tolerant of a dynamic
//! table it only partly knows.
//!
//! No maintained crate fits: `hpack`, `fluke-hpack`/`loona-hpack` and
//! `httlib-hpack` all fail a whole block on an index they cannot resolve
//! (and h2's decoder is private), while the agent must keep going when it
//! joined a connection late. So this is a decoder of its own: one
//! [`Decoder`] per direction of a connection, fed complete (or cut) header
//! blocks, reporting each field with the parts it could not resolve as
//! `None` (see [`table`] for why that never yields a wrong value).

pub mod huffman;
pub mod table;

use self::table::{DynamicTable, Lookup};

/// One decoded header field. `None`: not resolvable (a dynamic-table entry
/// inserted before the agent joined, or a string that failed to decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Why a header block could not be decoded to its end. The fields before
/// the error were reported; the dynamic table is forgotten (the rest of the
/// block may have inserted entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block cut short")]
    Truncated,
    #[error("integer too large")]
    IntegerOverflow,
    #[error("index 0 or beyond any table")]
    InvalidIndex,
}

impl HpackError {
    /// Label value in the agent's metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "hpack_truncated",
            Self::IntegerOverflow => "hpack_integer_overflow",
            Self::InvalidIndex => "hpack_invalid_index",
        }
    }
}

/// What decoding one block found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Fields reported.
    pub fields: u32,
    /// Fields with an unresolved name or value.
    pub unresolved: u32,
    /// Strings whose Huffman coding was invalid (their value is `None`).
    pub bad_huffman: u32,
    pub error: Option<HpackError>,
}

/// The decoder of one encoder's header blocks (one direction of one
/// connection).
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The largest table the decoding side allows (its
    /// SETTINGS_HEADER_TABLE_SIZE): size updates above it are clamped.
    limit: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

/// Longest integer accepted (continuation bytes after the prefix).
const MAX_INT_BYTES: usize = 5;

/// A decoded string: borrowed from the block, decoded into a scratch
/// buffer, or undecodable (`len` is its encoded length).
enum Str<'a> {
    Raw(&'a [u8]),
    Huffman,
    Bad { encoded_len: usize },
}

impl Decoder {
    /// `cap`: most bytes (as HPACK counts them) of dynamic table kept.
    pub fn new(cap: usize) -> Self {
        Self {
            table: DynamicTable::new(cap),
            limit: 4096,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// The decoding side advertised SETTINGS_HEADER_TABLE_SIZE = `size`.
    pub fn set_limit(&mut self, size: u32) {
        self.limit = size as usize;
        // The encoder must shrink to it (and signals that in its next
        // block); entries beyond it are gone either way.
        if self.limit < 4096 {
            self.table.set_max(self.limit);
        }
    }

    /// Forgets the dynamic table (blocks were lost).
    pub fn forget(&mut self) {
        self.table.forget();
    }

    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decodes one header block. `complete` is false when the block is only
    /// a prefix (a capture gap, or larger than the agent buffers): the
    /// fields seen in full are reported and the table is forgotten.
    pub fn decode(
        &mut self,
        block: &[u8],
        complete: bool,
        on_field: &mut impl FnMut(Field<'_>),
    ) -> BlockStats {
        let mut stats = BlockStats::default();
        let mut pos = 0;
        while pos < block.len() {
            if let Err(e) = self.representation(block, &mut pos, &mut stats, on_field) {
                stats.error = Some(e);
                break;
            }
        }
        if stats.error.is_some() || !complete {
            if stats.error.is_none() {
                stats.error = Some(HpackError::Truncated);
            }
            self.table.forget();
        }
        stats
    }

    fn representation(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        stats: &mut BlockStats,
        on_field: &mut impl FnMut(Field<'_>),
    ) -> Result<(), HpackError> {
        let first = block[*pos];
        if first & 0x80 != 0 {
            // Indexed field (§6.1).
            let index = integer(block, pos, 7)?;
            stats.fields += 1;
            match self.table.get(index) {
                Lookup::Found(name, value) => {
                    if name.is_none() || value.is_none() {
                        stats.unresolved += 1;
                    }
                    on_field(Field { name, value });
                }
                Lookup::Unresolved => {
                    stats.unresolved += 1;
                    on_field(Field {
                        name: None,
                        value: None,
                    });
                }
                Lookup::Invalid => return Err(HpackError::InvalidIndex),
            }
            return Ok(());
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update (§6.3).
            let size = integer(block, pos, 5)?;
            let size = usize::try_from(size).unwrap_or(usize::MAX).min(self.limit);
            self.table.set_max(size);
            return Ok(());
        }
        // Literal (§6.2): with incremental indexing (01), without indexing
        // (0000) or never indexed (0001).
        let indexing = first & 0xc0 == 0x40;
        let prefix = if indexing { 6 } else { 4 };
        let name_index = integer(block, pos, prefix)?;
        stats.fields += 1;
        // The name: copied to `self.name` (it may live in the table, which
        // the insertion below changes), or unresolved.
        self.name.clear();
        let mut name_known = true;
        let mut name_min = 0;
        if name_index == 0 {
            match string(block, pos, &mut self.name, stats)? {
                Str::Raw(s) => self.name.extend_from_slice(s),
                Str::Huffman => {}
                Str::Bad { encoded_len } => {
                    name_known = false;
                    name_min = encoded_len * 8 / 30;
                }
            }
        } else {
            match self.table.get(name_index) {
                Lookup::Found(Some(n), _) => self.name.extend_from_slice(n),
                Lookup::Found(None, _) | Lookup::Unresolved => name_known = false,
                Lookup::Invalid => return Err(HpackError::InvalidIndex),
            }
        }
        self.value.clear();
        let mut value_min = 0;
        let value = match string(block, pos, &mut self.value, stats)? {
            Str::Raw(s) => Some(s),
            Str::Huffman => Some(&self.value[..]),
            Str::Bad { encoded_len } => {
                value_min = encoded_len * 8 / 30;
                None
            }
        };
        let name = name_known.then_some(&self.name[..]);
        if name.is_none() || value.is_none() {
            stats.unresolved += 1;
        }
        on_field(Field { name, value });
        if indexing {
            let min = table::ENTRY_OVERHEAD
                + name.map_or(name_min, <[u8]>::len)
                + value.map_or(value_min, <[u8]>::len);
            self.table.insert(name, value, min);
        }
        Ok(())
    }
}

/// Decodes an integer with an `n`-bit prefix at `*pos` (§5.1).
fn integer(block: &[u8], pos: &mut usize, n: u32) -> Result<u64, HpackError> {
    let max_prefix = (1u64 << n) - 1;
    let Some(&first) = block.get(*pos) else {
        return Err(HpackError::Truncated);
    };
    *pos += 1;
    let mut value = u64::from(first) & max_prefix;
    if value < max_prefix {
        return Ok(value);
    }
    for i in 0..MAX_INT_BYTES {
        let Some(&b) = block.get(*pos) else {
            return Err(HpackError::Truncated);
        };
        *pos += 1;
        value += u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerOverflow)
}

/// Decodes a string literal at `*pos` (§5.2); Huffman strings go to `out`.
fn string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
    stats: &mut BlockStats,
) -> Result<Str<'a>, HpackError> {
    let Some(&first) = block.get(*pos) else {
        return Err(HpackError::Truncated);
    };
    let huffman = first & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos
        .checked_add(usize::try_from(len).map_err(|_| HpackError::Truncated)?)
        .filter(|&e| e <= block.len())
        .ok_or(HpackError::Truncated)?;
    let raw = &block[*pos..end];
    *pos = end;
    if !huffman {
        return Ok(Str::Raw(raw));
    }
    match huffman::decode(raw, out) {
        Ok(()) => Ok(Str::Huffman),
        Err(_) => {
            stats.bad_huffman += 1;
            out.clear();
            Ok(Str::Bad {
                encoded_len: raw.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
