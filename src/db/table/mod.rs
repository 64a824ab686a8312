//! Sorted tables: the immutable files under the memtable (DESIGN.md §9).
//!
//! ```text
//!  ┌────────────┬─────┬────────────┬────────┬───────┬────────┐
//!  │ data block │ ... │ data block │ filter │ index │ footer │   each block: payload, then
//!  └────────────┴─────┴────────────┴────────┴───────┴────────┘   compression (1) + CRC32C (4)
//!  data block payload: entry × n, then u32 n
//!  entry:              varint key_len, key, varint lsn, varint tag (0: deletion; len + 1), value
//!  index entry:        a data block's last key and LSN, and its handle (u64 offset, u32 len)
//! ```
//!
//! - **Order.** Entries ascend by key, and a key's versions follow each other newest first
//!   ([`format::compare_entries`]): the version a snapshot at `S` reads is the first entry of
//!   its key at or below `S`, found with one search of the index and one of a block.
//! - **Every byte checked.** Each block carries the CRC32C of its payload and compression byte,
//!   the footer its own; the blocks tile the file with no gap (checked when the table is
//!   opened), so a change to any byte of a table is detected before the byte is used
//!   (`tests/table.rs` flips every byte of a table).
//! - **An absent key costs no data-block read** for about 99 % of keys: the filter
//!   (`src/db/bloom.rs`, 10 bits per key) answers "absent" first.
//! - **Bounded decoding.** The decoders in [`format`] are pure and total; lengths are checked
//!   against the bytes left and the database's key and value limits before use (fuzzed:
//!   `cargo fuzz run table_decode`).
//! - **Compression, where it pays.** With [`Compression::Lz4`] a data block that LZ4 shrinks by
//!   an eighth is stored compressed (its compression byte says so, and its checksum covers the
//!   compressed bytes); after one that does not, the next seven are not tried.
//! - **Immutable and written once.** A table is written whole by [`TableWriter`] and synced
//!   before anything names it; it is never changed after.
//!
//! The layout, field by field, is in `docs/FORMAT.md` (checked by `tests/format_doc.rs`).

pub mod build;
pub mod format;
pub mod read;

pub use build::{BuildOptions, Compression, TableBuilder, TableMeta, TableWriter};
pub use format::{Block, BlockKind, DecodedTable, EntryRef, Footer, TableError, TableLimits, decode};
pub use read::{Table, TableEntry, TableIter};
