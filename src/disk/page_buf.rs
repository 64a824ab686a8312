//! [`PageBuf`]: bytes kept at a 4 KiB-aligned address, as a write past the OS cache
//! (`O_DIRECT`) needs them. The log writer keeps the page being written in one, so that
//! [`DiskFile::write_pages_at`] takes it as it is; [`StdDisk`](crate::StdDisk) copies any other
//! buffer into one first, and writes a segment's zeros from one.
//!
//! Without `unsafe`: the bytes live in a zeroed `Vec<u8>` one alignment longer than needed,
//! from the first aligned address in it. The `Vec` is never grown in place (which could move
//! it); a larger one replaces it.
//!
//! [`DiskFile::write_pages_at`]: crate::DiskFile::write_pages_at

/// The address alignment kept, and `O_DIRECT`'s alignment of offsets and lengths: the largest
/// logical block size in common use.
pub(crate) const PAGE_ALIGN: usize = 4096;

/// A growable byte buffer whose first byte (when it has one) is at a [`PAGE_ALIGN`]-aligned
/// address.
#[derive(Debug, Default)]
pub(crate) struct PageBuf {
    /// Zeroed storage; the bytes are `store[start..start + len]`.
    store: Vec<u8>,
    start: usize,
    len: usize,
}

impl PageBuf {
    /// A buffer holding `bytes`.
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        let mut b = PageBuf::default();
        b.extend_from_slice(bytes);
        b
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.store[self.start..self.start + self.len]
    }

    /// Room for `len` bytes from the aligned start, keeping the bytes held.
    fn reserve_to(&mut self, len: usize) {
        if self.start + len <= self.store.len() {
            return;
        }
        let capacity = len.max(2 * self.len).next_multiple_of(PAGE_ALIGN);
        let store = vec![0u8; capacity + PAGE_ALIGN];
        let start = store.as_ptr().align_offset(PAGE_ALIGN);
        let mut next = PageBuf { store, start, len: self.len };
        next.store[start..start + self.len].copy_from_slice(self.as_slice());
        *self = next;
    }

    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.reserve_to(end);
        self.store[self.start + self.len..self.start + end].copy_from_slice(bytes);
        self.len = end;
    }

    /// Grows to `len` bytes with zeros, or shortens to it.
    pub(crate) fn resize_zeroed(&mut self, len: usize) {
        if len > self.len {
            self.reserve_to(len);
            self.store[self.start + self.len..self.start + len].fill(0);
        }
        self.len = len;
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops the first `n` bytes, moving the rest to the aligned start.
    pub(crate) fn drop_front(&mut self, n: usize) {
        assert!(n <= self.len, "drop_front({n}) of {} bytes", self.len);
        if n == 0 {
            return; // the common case while one page fills: no move of the page onto itself
        }
        self.store.copy_within(self.start + n..self.start + self.len, self.start);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_stay_aligned_and_intact_through_growth_and_moves() {
        let mut b = PageBuf::default();
        assert_eq!(b.as_slice(), b"");
        let mut model: Vec<u8> = Vec::new();
        let mut x = 1u8;
        for round in 0..200usize {
            let n = (round * 97) % 5000;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(31).wrapping_add(7);
                    x
                })
                .collect();
            b.extend_from_slice(&bytes);
            model.extend_from_slice(&bytes);
            let padded = model.len().next_multiple_of(PAGE_ALIGN);
            b.resize_zeroed(padded);
            let live = model.len();
            model.resize(padded, 0);
            assert_eq!(b.as_slice(), &model[..]);
            if padded > 0 {
                assert_eq!(b.as_slice().as_ptr().align_offset(PAGE_ALIGN), 0, "round {round}");
            }
            b.truncate(live);
            model.truncate(live);
            let drop = live - live % PAGE_ALIGN;
            b.drop_front(drop);
            model.drain(..drop);
            assert_eq!(b.as_slice(), &model[..]);
            assert_eq!(b.len(), model.len());
        }
        let c = PageBuf::from_slice(b"abc");
        assert_eq!(c.as_slice(), b"abc");
        assert_eq!(c.as_slice().as_ptr().align_offset(PAGE_ALIGN), 0);
    }

    #[test]
    fn resize_zeroes_bytes_a_truncate_left_behind() {
        let mut b = PageBuf::from_slice(&[9u8; 100]);
        b.truncate(10);
        b.resize_zeroed(100);
        assert_eq!(&b.as_slice()[..10], &[9u8; 10]);
        assert!(b.as_slice()[10..].iter().all(|&x| x == 0), "stale bytes came back");
    }
}
