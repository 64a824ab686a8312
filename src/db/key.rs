//! [`Key`]: a key as the database holds it and scans return it.
//!
//! A key's first [`HEAD_BYTES`] bytes are kept inline, zero-padded, in its 32 bytes:
//!
//! - a key of at most 16 bytes is its head and its length: it costs no allocation, and a
//!   copy copies 32 bytes;
//! - a longer key is also held whole in one shared allocation (`Arc<[u8]>`), which its copies
//!   share.
//!
//! The memtable's searches compare heads first, as one big-endian number ([`head`]), and read
//! a long key's allocation only on a tie: one cache miss per skip-list node instead of two.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// How many leading bytes of a key [`Key`] keeps inline.
pub(crate) const HEAD_BYTES: usize = 16;

/// A key's first [`HEAD_BYTES`] bytes, zero-padded, as one big-endian number: heads compare
/// as the bytes do.
pub(crate) type Head = u128;

/// A key: bytes, compared, hashed and printed as a `[u8]` is. Derefs to `[u8]`.
///
/// Up to 16 bytes it is stored inline (no allocation); a longer key is shared, like an
/// `Arc<[u8]>`. [`Db::scan`](crate::Db::scan) and [`Transaction::scan`](crate::Transaction::scan)
/// return their keys as `Key`s, so that a scan allocates nothing per short key.
///
/// ```
/// use waldb::Key;
/// let short = Key::from(&b"user:42"[..]);
/// assert_eq!(&*short, b"user:42");
/// assert!(short < Key::from(&b"user:43"[..]));
/// let shared: std::sync::Arc<[u8]> = short.into();
/// assert_eq!(&*shared, b"user:42");
/// ```
#[derive(Clone)]
pub struct Key {
    head: [u8; HEAD_BYTES],
    tail: Tail,
}

/// Where the bytes of a [`Key`] are.
#[derive(Clone)]
enum Tail {
    /// The key is the first `n` bytes of its head.
    Inline(u8),
    /// The whole key (its head repeats the first bytes).
    Shared(Arc<[u8]>),
}

/// The head of `key`, as bytes.
fn head_bytes(key: &[u8]) -> [u8; HEAD_BYTES] {
    let mut b = [0u8; HEAD_BYTES];
    let n = key.len().min(HEAD_BYTES);
    b[..n].copy_from_slice(&key[..n]);
    b
}

/// The head of `key`.
///
/// Where the heads of two keys differ, the keys compare as their heads do: at the first byte
/// where the heads differ, either both keys have that byte, or the shorter key has ended, all
/// its bytes are equal to the other's, and the other's byte there is not zero (it differs
/// from the padding), so the shorter key is a prefix of the other and sorts first. Where the
/// heads are equal the keys' bytes decide (`b"a"` and `b"a\0"` have the same head).
pub(crate) fn head(key: &[u8]) -> Head {
    Head::from_be_bytes(head_bytes(key))
}

/// Two keys given by their heads and bytes, in the order of their bytes (see [`head`]): the
/// one comparison of stored keys and of the memtable's probes.
pub(crate) fn compare(a: (Head, &[u8]), b: (Head, &[u8])) -> Ordering {
    a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1))
}

impl Key {
    /// `bytes`, copied: into the key itself if they fit, else into one shared allocation.
    pub fn new(bytes: &[u8]) -> Self {
        let tail = match u8::try_from(bytes.len()) {
            Ok(n) if bytes.len() <= HEAD_BYTES => Tail::Inline(n),
            _ => Tail::Shared(Arc::from(bytes)),
        };
        Key { head: head_bytes(bytes), tail }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.tail {
            Tail::Inline(n) => &self.head[..usize::from(*n)],
            Tail::Shared(bytes) => bytes,
        }
    }

    /// The head, as [`head`] computes it from the bytes.
    pub(crate) fn head_word(&self) -> Head {
        Head::from_be_bytes(self.head)
    }
}

impl From<&[u8]> for Key {
    fn from(bytes: &[u8]) -> Self {
        Key::new(bytes)
    }
}

impl<const N: usize> From<&[u8; N]> for Key {
    fn from(bytes: &[u8; N]) -> Self {
        Key::new(bytes)
    }
}

/// The key as a shared allocation: a long key's own, a short key's made now.
impl From<Key> for Arc<[u8]> {
    fn from(key: Key) -> Self {
        match key.tail {
            Tail::Inline(_) => Arc::from(key.as_bytes()),
            Tail::Shared(bytes) => bytes,
        }
    }
}

impl From<Key> for Vec<u8> {
    fn from(key: Key) -> Self {
        key.as_bytes().to_vec()
    }
}

impl Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Consistent with `[u8]`'s order, equality and hash: a map of `Key`s is searched by `&[u8]`.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes().fmt(f)
    }
}

/// As the bytes: the heads first (see `head`), then the bytes on a tie.
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        compare((self.head_word(), self.as_bytes()), (other.head_word(), other.as_bytes()))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialEq<[u8]> for Key {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for Key {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Key {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_bytes() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Key {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_bytes() == *other
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_at_most_sixteen_bytes_live_inline() {
        assert_eq!(std::mem::size_of::<Key>(), 32, "a head and a shared pointer's room");
        for len in [0, 1, 15, 16] {
            let key = Key::new(&vec![0; len]);
            assert!(matches!(key.tail, Tail::Inline(n) if usize::from(n) == len), "{len} bytes");
            assert_eq!(key.len(), len);
        }
        let long = Key::new(&[9; 17]);
        assert!(matches!(&long.tail, Tail::Shared(b) if b.len() == 17));
        let (a, b): (Arc<[u8]>, Arc<[u8]>) = (long.clone().into(), long.into());
        assert!(Arc::ptr_eq(&a, &b), "copies of a long key share its bytes");
        // Zero padding is not part of a short key: equal heads, different keys.
        let (a, a0) = (Key::new(b"a"), Key::new(b"a\0"));
        assert_eq!(a.head, a0.head);
        assert!(a != a0 && a < a0);
    }

    /// Its order against other keys, and against probes: `memtable.rs`,
    /// `probes_and_stored_keys_order_as_their_bytes`.
    #[test]
    fn a_key_hashes_and_compares_as_its_bytes() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |h: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            h(&mut s);
            s.finish()
        };
        for bytes in [&b""[..], b"k", &[7; 16], &[7; 40]] {
            let key = Key::new(bytes);
            assert_eq!(hash(&|s| key.hash(s)), hash(&|s| bytes.hash(s)));
            assert!(key == *bytes && key == bytes);
            assert_eq!(Vec::from(key.clone()), bytes);
            assert_eq!(&*Arc::<[u8]>::from(key), bytes);
        }
        let set: std::collections::HashSet<Key> = [Key::from(b"x"), Key::from(&[1; 20])].into();
        assert!(set.contains(&b"x"[..]) && set.contains(&[1u8; 20][..]) && !set.contains(&b"y"[..]));
    }
}
