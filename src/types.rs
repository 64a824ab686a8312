//! Newtypes for the numbers that must never be mixed up: log sequence numbers, segment sequence
//! numbers and transaction ids. Each is a `u64` on disk, little-endian.

use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The next number.
            ///
            /// # Panics
            ///
            /// At `u64::MAX`, which 2^64 appends can never reach.
            #[must_use]
            pub const fn next(self) -> Self {
                match self.0.checked_add(1) {
                    Some(n) => Self(n),
                    None => panic!(concat!(stringify!($name), " overflow")),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Honour width and alignment, as integers do.
                if $prefix.is_empty() {
                    fmt::Display::fmt(&self.0, f)
                } else {
                    f.pad(&format!(concat!($prefix, "{}"), self.0))
                }
            }
        }
    };
}

id_newtype!(
    /// A log sequence number: the position of a record in the whole log. The first record of a
    /// new log has LSN 1; LSN 0 means "none". Within a segment LSNs rise by exactly one per record;
    /// at a segment boundary they may jump forward (the segment header records both sides).
    Lsn,
    ""
);

id_newtype!(
    /// The sequence number of a segment file; segment files are named by it and read in its
    /// order. The first segment of a new log is 1. Never reused.
    SegmentId,
    "segment "
);

id_newtype!(
    /// A transaction id, carried in every transaction record.
    TxnId,
    "txn "
);

impl Lsn {
    /// "No LSN": the last LSN of an empty log.
    pub const ZERO: Lsn = Lsn(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_and_display() {
        assert_eq!(Lsn(7).next(), Lsn(8));
        assert_eq!(Lsn(8).to_string(), "8");
        assert_eq!(format!("{:>4}|{:<10}|", Lsn(8), SegmentId(2)), "   8|segment 2 |");
        assert_eq!(SegmentId(3).to_string(), "segment 3");
        assert!(Lsn(1) > Lsn::ZERO);
    }

    #[test]
    #[should_panic(expected = "Lsn overflow")]
    fn next_overflow_panics() {
        let _ = Lsn(u64::MAX).next();
    }
}
