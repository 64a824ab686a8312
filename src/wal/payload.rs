//! Payload codecs of the record kinds: a transaction (an atomic batch of puts and deletes) and
//! a checkpoint marker. Hand-specified layouts; the decoders validate everything before they
//! return, allocate nothing, and bound every count by the bytes that remain.

use super::format::{KIND_CHECKPOINT, KIND_IGNORABLE_BIT, KIND_TXN};
use crate::types::{Lsn, TxnId};
use std::fmt;

/// The kind of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A transaction: an atomic batch of operations.
    Txn,
    /// A checkpoint marker: the state up to an LSN is in a checkpoint file.
    Checkpoint,
    /// A kind this build does not know. Readers skip it if its high bit
    /// ([`KIND_IGNORABLE_BIT`]) is set, and treat it as corruption otherwise.
    Unknown(u8),
}

impl RecordKind {
    /// The kind byte.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Txn => KIND_TXN,
            RecordKind::Checkpoint => KIND_CHECKPOINT,
            RecordKind::Unknown(b) => b,
        }
    }

    /// The kind of a kind byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            KIND_TXN => RecordKind::Txn,
            KIND_CHECKPOINT => RecordKind::Checkpoint,
            other => RecordKind::Unknown(other),
        }
    }

    /// True for an unknown kind that readers may skip.
    pub fn is_ignorable(self) -> bool {
        matches!(self, RecordKind::Unknown(b) if b & KIND_IGNORABLE_BIT != 0)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKind::Txn => write!(f, "txn"),
            RecordKind::Checkpoint => write!(f, "checkpoint"),
            RecordKind::Unknown(b) => write!(f, "unknown({b})"),
        }
    }
}

/// One operation of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

impl<'a> Op<'a> {
    /// The key it touches.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// `txn_id` + `op_count`.
const TXN_FIXED_BYTES: usize = 8 + 4;
/// The smallest encoded operation: a delete of an empty key (tag + key length).
const OP_BYTES_MIN: usize = 1 + 4;

/// Why a payload is malformed (its record's checksum was valid, so this is a writer bug or a
/// newer format, never a torn write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadError(pub &'static str);

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The encoded size of a transaction payload.
pub fn txn_payload_bytes(ops: &[Op<'_>]) -> usize {
    TXN_FIXED_BYTES
        + ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => 1 + 4 + key.len() + 4 + value.len(),
                Op::Delete { key } => 1 + 4 + key.len(),
            })
            .sum::<usize>()
}

// Format: transaction payload
//   u64 txn_id
//   u32 op_count
//   op_count × { u8 tag (1 = put, 2 = delete)
//                u32 key_len, key_len bytes of key
//                put only: u32 value_len, value_len bytes of value }
// Nothing may follow the last operation.
/// Appends the payload of a transaction to `out`.
///
/// # Panics
///
/// If there are more than `u32::MAX` operations or a key or value longer than `u32::MAX` bytes:
/// callers enforce much smaller limits first.
pub fn encode_txn(out: &mut Vec<u8>, txn_id: TxnId, ops: &[Op<'_>]) {
    out.reserve(txn_payload_bytes(ops));
    encode_txn_ops(out, txn_id, ops.iter().copied());
}

/// [`encode_txn`] from an iterator of operations, without collecting them first; the caller
/// reserves room in `out` if it wants to.
///
/// # Panics
///
/// As [`encode_txn`].
pub fn encode_txn_ops<'o>(out: &mut Vec<u8>, txn_id: TxnId, ops: impl ExactSizeIterator<Item = Op<'o>>) {
    let len = |n: usize| u32::try_from(n).expect("length fits u32: checked by the caller's limits");
    out.extend_from_slice(&txn_id.0.to_le_bytes());
    out.extend_from_slice(&len(ops.len()).to_le_bytes());
    for op in ops {
        match op {
            Op::Put { key, value } => {
                out.push(OP_PUT);
                out.extend_from_slice(&len(key.len()).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&len(value.len()).to_le_bytes());
                out.extend_from_slice(value);
            }
            Op::Delete { key } => {
                out.push(OP_DELETE);
                out.extend_from_slice(&len(key.len()).to_le_bytes());
                out.extend_from_slice(key);
            }
        }
    }
}

/// A validated transaction payload; iterate its operations with [`TxnRef::ops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnRef<'a> {
    /// The transaction id.
    pub txn_id: TxnId,
    op_count: u32,
    ops: &'a [u8],
}

impl<'a> TxnRef<'a> {
    /// Number of operations.
    pub fn op_count(&self) -> u32 {
        self.op_count
    }

    /// The operations, in the order they were written.
    pub fn ops(&self) -> OpIter<'a> {
        OpIter { rest: self.ops, left: self.op_count }
    }
}

/// Iterator over the operations of a [`TxnRef`].
#[derive(Clone, Debug)]
pub struct OpIter<'a> {
    rest: &'a [u8],
    left: u32,
}

/// Splits `n` bytes off the front of `buf`.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], PayloadError> {
    if buf.len() < n {
        return Err(PayloadError("transaction payload ends inside an operation"));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, PayloadError> {
    let b = take(buf, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_len(buf: &mut &[u8]) -> Result<usize, PayloadError> {
    // A length larger than what remains is caught by the `take` that uses it.
    usize::try_from(take_u32(buf)?).map_err(|_| PayloadError("length does not fit in memory"))
}

fn next_op<'a>(buf: &mut &'a [u8]) -> Result<Op<'a>, PayloadError> {
    let tag = take(buf, 1)?[0];
    let key_len = take_len(buf)?;
    let key = take(buf, key_len)?;
    match tag {
        OP_PUT => {
            let value_len = take_len(buf)?;
            let value = take(buf, value_len)?;
            Ok(Op::Put { key, value })
        }
        OP_DELETE => Ok(Op::Delete { key }),
        _ => Err(PayloadError("unknown operation tag")),
    }
}

impl<'a> Iterator for OpIter<'a> {
    type Item = Op<'a>;

    fn next(&mut self) -> Option<Op<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated by `decode_txn`, so this cannot fail; stop rather than panic if it did.
        let op = next_op(&mut self.rest);
        debug_assert!(op.is_ok(), "validated transaction payload failed to decode");
        op.ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left as usize;
        (n, Some(n))
    }
}

/// Validates a transaction payload and returns a view of it.
///
/// # Errors
///
/// [`PayloadError`] if the payload is shorter than its counts say, has bytes after the last
/// operation, an unknown operation tag, or more operations than its bytes could hold.
pub fn decode_txn(payload: &[u8]) -> Result<TxnRef<'_>, PayloadError> {
    let mut buf = payload;
    let head = take(&mut buf, TXN_FIXED_BYTES)
        .map_err(|_| PayloadError("transaction payload shorter than its fixed fields"))?;
    let txn_id = TxnId(u64::from_le_bytes(head[..8].try_into().expect("8 bytes")));
    let op_count = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if (op_count as usize) > buf.len() / OP_BYTES_MIN {
        return Err(PayloadError("operation count larger than the payload can hold"));
    }
    let ops = buf;
    for _ in 0..op_count {
        next_op(&mut buf)?;
    }
    if !buf.is_empty() {
        return Err(PayloadError("bytes after the last operation"));
    }
    Ok(TxnRef { txn_id, op_count, ops })
}

// Format: checkpoint marker payload
//   u64 checkpoint_lsn   the state of every record up to this LSN is in a checkpoint file
/// The payload of a checkpoint marker.
pub fn encode_checkpoint(checkpoint_lsn: Lsn) -> [u8; 8] {
    checkpoint_lsn.0.to_le_bytes()
}

/// Decodes a checkpoint marker payload.
///
/// # Errors
///
/// [`PayloadError`] unless the payload is exactly 8 bytes.
pub fn decode_checkpoint(payload: &[u8]) -> Result<Lsn, PayloadError> {
    let bytes: [u8; 8] =
        payload.try_into().map_err(|_| PayloadError("checkpoint marker payload is not 8 bytes"))?;
    Ok(Lsn(u64::from_le_bytes(bytes)))
}

/// Validates the payload of a record of `kind`; unknown kinds have nothing to validate.
///
/// # Errors
///
/// As [`decode_txn`] and [`decode_checkpoint`].
pub fn validate_payload(kind: RecordKind, payload: &[u8]) -> Result<(), PayloadError> {
    match kind {
        RecordKind::Txn => decode_txn(payload).map(|_| ()),
        RecordKind::Checkpoint => decode_checkpoint(payload).map(|_| ()),
        RecordKind::Unknown(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_round_trip() {
        let ops =
            [Op::Put { key: b"a", value: b"1" }, Op::Delete { key: b"bb" }, Op::Put { key: b"", value: b"" }];
        let mut out = Vec::new();
        encode_txn(&mut out, TxnId(77), &ops);
        assert_eq!(out.len(), txn_payload_bytes(&ops));
        let t = decode_txn(&out).unwrap();
        assert_eq!(t.txn_id, TxnId(77));
        assert_eq!(t.op_count(), 3);
        assert_eq!(t.ops().collect::<Vec<_>>(), ops);
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let ops = [Op::Put { key: b"key", value: b"value" }, Op::Delete { key: b"k2" }];
        let mut out = Vec::new();
        encode_txn(&mut out, TxnId(1), &ops);
        for cut in 0..out.len() {
            assert!(decode_txn(&out[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(decode_txn(&longer), Err(PayloadError("bytes after the last operation")));
    }

    #[test]
    fn hostile_counts_are_rejected_before_any_work() {
        let mut out = Vec::new();
        encode_txn(&mut out, TxnId(1), &[]);
        out[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_txn(&out), Err(PayloadError("operation count larger than the payload can hold")));
        let mut bad_tag = Vec::new();
        encode_txn(&mut bad_tag, TxnId(1), &[Op::Delete { key: b"k" }]);
        bad_tag[12] = 9;
        assert_eq!(decode_txn(&bad_tag), Err(PayloadError("unknown operation tag")));
    }

    #[test]
    fn checkpoint_and_kinds() {
        assert_eq!(decode_checkpoint(&encode_checkpoint(Lsn(5))), Ok(Lsn(5)));
        assert!(decode_checkpoint(&[0; 7]).is_err());
        assert_eq!(RecordKind::from_byte(1), RecordKind::Txn);
        assert_eq!(RecordKind::from_byte(2), RecordKind::Checkpoint);
        assert!(RecordKind::from_byte(0x81).is_ignorable());
        assert!(!RecordKind::from_byte(3).is_ignorable());
        for b in 1..=255u8 {
            assert_eq!(RecordKind::from_byte(b).to_byte(), b);
        }
    }
}
