//! The commit-order oracle of the async harnesses (turmoil and madsim, feature `sim`): what
//! their writers commit, and the checks of every recovered state and every snapshot against it.
//!
//! The harnesses' workload is fixed so that a state can be read back without a model of each
//! key: a transaction named `name` writes keys [`txn_key`]`(name, 0..k)`, each value headed by
//! its key count and whether the transaction also incremented the shared [`COUNTER`]
//! ([`txn_value`]). A harness records each commit with [`History::sequenced`] as soon as its
//! LSN is known — before the first `.await`, so a commit whose outcome is an error is placed in
//! the commit order from the start — and [`History::acknowledged`] when it resolves `Ok`.
//!
//! [`History::check_recovered`], after every crash:
//!
//! 1. every transaction known to be durable is present: an acknowledged `Sync` transaction, a
//!    `Sync` transaction a snapshot has seen (visible means durable for `Sync`), and one an
//!    earlier recovery found;
//! 2. every transaction present is whole, with the contents it was committed with;
//! 3. the state is a prefix of the commit order: every transaction sequenced at or below the
//!    highest LSN present is present, and none that was never sequenced, or was lost at an
//!    earlier crash, is;
//! 4. the counter equals the number of increments present (no lost update, no torn one).
//!
//! [`History::check_snapshot`], while running: a snapshot holds every transaction settled
//! (acknowledged or recovered) before it began, each whole, with a counter equal to the
//! increments it holds; the `Sync` transactions it holds are durable from then on.
//!
//! The database campaign ([`crate::sim::campaign`]) has its own, finer model (key for key, at every
//! LSN); this one is what a harness that cannot see inside the scheduler can check.

use std::collections::{BTreeMap, BTreeSet};

use crate::Lsn;
use crate::db::Pair;

/// The key of the counter that one transaction in some increments (a read-modify-write).
pub const COUNTER: &[u8] = b"counter";

/// The key `i` of the transaction `name`.
#[must_use]
pub fn txn_key(name: &str, i: u64) -> Vec<u8> {
    format!("t/{name}/{i}").into_bytes()
}

/// A value of a transaction with `keys` keys that `increments` the counter (or not), padded
/// with `pad` bytes.
#[must_use]
pub fn txn_value(keys: u64, increments: bool, pad: usize) -> Vec<u8> {
    format!("k={keys};inc={}|{}", u8::from(increments), "x".repeat(pad)).into_bytes()
}

/// The counter's value as stored: absent is 0; anything unreadable is `u64::MAX`, which no
/// check accepts.
#[must_use]
pub fn counter_value(value: Option<&[u8]>) -> u64 {
    value.map_or(0, |v| std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX))
}

/// One sequenced transaction, while it may still be (or become) present.
#[derive(Clone, Debug)]
struct Txn {
    lsn: Lsn,
    keys: u64,
    increments: bool,
    sync: bool,
    /// Acknowledged, or found present after a crash: every later snapshot must hold it.
    settled: bool,
    /// Known to be durable, and how: every later recovery must hold it.
    durable: Option<Durable>,
}

/// How a transaction is known to be durable.
#[derive(Clone, Copy, Debug)]
enum Durable {
    /// An acknowledged `Sync` commit.
    Acknowledged,
    /// A `Sync` commit seen by a snapshot: visible only once durable.
    Seen,
    /// Found present by a recovery.
    Recovered,
}

/// The sequenced transactions of a run, and those lost at crashes.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Sequenced transactions not (yet) known to be lost, by name.
    txns: BTreeMap<String, Txn>,
    /// Transactions lost at a crash: never to be seen again.
    lost: BTreeSet<String>,
}

/// What a snapshot or a recovered state holds: transactions (name → key count, increments,
/// indexes seen) and the counter.
#[derive(Default)]
struct Seen {
    txns: BTreeMap<String, (u64, bool, Vec<u64>)>,
    counter: u64,
}

impl History {
    /// Records a transaction sequenced at `lsn` with `keys` keys, incrementing the counter or
    /// not, committed `Sync` or not. Call it before the commit's first `.await`.
    pub fn sequenced(&mut self, name: &str, lsn: Lsn, keys: u64, increments: bool, sync: bool) {
        let t = Txn { lsn, keys, increments, sync, settled: false, durable: None };
        self.txns.insert(name.to_owned(), t);
    }

    /// Records that the commit of `name` resolved `Ok`: every later snapshot must hold it, and
    /// if it was `Sync`, every later recovery.
    pub fn acknowledged(&mut self, name: &str) {
        if let Some(t) = self.txns.get_mut(name) {
            t.settled = true;
            if t.sync {
                t.durable = t.durable.or(Some(Durable::Acknowledged));
            }
        }
    }

    /// The transactions every snapshot taken from now on must hold.
    #[must_use]
    pub fn settled(&self) -> Vec<String> {
        self.txns.iter().filter(|t| t.1.settled).map(|t| t.0.clone()).collect()
    }

    /// Checks a recovered state (a scan of everything) against the history, then forgets the
    /// transactions it lost and settles the ones it kept. Returns how many it holds.
    ///
    /// # Errors
    ///
    /// The first broken invariant of the module docs, in words.
    pub fn check_recovered(&mut self, pairs: &[Pair]) -> Result<u64, String> {
        let seen = parse(pairs)?;
        let mut highest = None;
        for (name, (k, inc, _)) in &seen.txns {
            if self.lost.contains(name) {
                return Err(format!("transaction {name}, lost at an earlier crash, is present again"));
            }
            let t = self
                .txns
                .get(name)
                .ok_or_else(|| format!("transaction {name} was never sequenced but is present"))?;
            if (t.keys, t.increments) != (*k, *inc) {
                return Err(format!("transaction {name} is present with different contents"));
            }
            highest = highest.max(Some(t.lsn));
        }
        for (name, t) in &self.txns {
            if seen.txns.contains_key(name) {
                continue;
            }
            let lsn = t.lsn;
            match t.durable {
                None => {}
                Some(Durable::Acknowledged) => {
                    return Err(format!("acknowledged Sync transaction {name} (LSN {lsn}) is missing"));
                }
                Some(Durable::Seen) => {
                    return Err(format!(
                        "Sync transaction {name} (LSN {lsn}), seen by a snapshot, is missing"
                    ));
                }
                Some(Durable::Recovered) => {
                    return Err(format!(
                        "transaction {name} (LSN {lsn}), present at an earlier recovery, is missing"
                    ));
                }
            }
            if let Some(h) = highest
                && lsn <= h
            {
                return Err(format!(
                    "not a prefix: transaction {name} at LSN {lsn} is missing, one at LSN {h} is present"
                ));
            }
        }
        let lost: Vec<String> = self.txns.keys().filter(|n| !seen.txns.contains_key(*n)).cloned().collect();
        for name in lost {
            self.txns.remove(&name);
            self.lost.insert(name);
        }
        for t in self.txns.values_mut() {
            t.settled = true;
            t.durable = t.durable.or(Some(Durable::Recovered));
        }
        Ok(seen.txns.len() as u64)
    }

    /// Checks a snapshot (a scan of everything) taken after `settled` was read from
    /// [`History::settled`], and records the `Sync` transactions it holds as durable.
    ///
    /// # Errors
    ///
    /// A torn transaction, a counter that disagrees with its increments, or a settled
    /// transaction missing, in words.
    pub fn check_snapshot(&mut self, settled: &[String], pairs: &[Pair]) -> Result<(), String> {
        let seen = parse(pairs)?;
        if let Some(n) = settled.iter().find(|n| !seen.txns.contains_key(*n)) {
            return Err(format!("settled transaction {n} is not in a later snapshot"));
        }
        for name in seen.txns.keys() {
            if let Some(t) = self.txns.get_mut(name)
                && t.sync
            {
                t.durable = t.durable.or(Some(Durable::Seen));
            }
        }
        Ok(())
    }
}

/// Reads a state back into transactions, checking each is whole and the counter.
fn parse(pairs: &[Pair]) -> Result<Seen, String> {
    let mut seen = Seen::default();
    for (key, value) in pairs {
        let key = std::str::from_utf8(key).map_err(|e| e.to_string())?;
        let value = std::str::from_utf8(value).map_err(|e| e.to_string())?;
        if key.as_bytes() == COUNTER {
            seen.counter = value.parse().map_err(|_| format!("counter {value:?} is not a number"))?;
            continue;
        }
        let (name, i) = key
            .strip_prefix("t/")
            .and_then(|k| k.rsplit_once('/'))
            .ok_or_else(|| format!("unexpected key {key:?}"))?;
        let i: u64 = i.parse().map_err(|_| format!("{key}: a bad index"))?;
        let header = value.split('|').next().unwrap_or_default();
        let (k, inc) = header
            .strip_prefix("k=")
            .and_then(|h| h.split_once(";inc="))
            .ok_or_else(|| format!("{key}: a bad value header {header:?}"))?;
        let k: u64 = k.parse().map_err(|_| format!("{key}: a bad key count"))?;
        let entry = seen.txns.entry(name.to_owned()).or_insert((k, inc == "1", Vec::new()));
        entry.2.push(i);
    }
    for (name, (k, _, idx)) in &mut seen.txns {
        idx.sort_unstable();
        if *idx != (0..*k).collect::<Vec<_>>() {
            return Err(format!("transaction {name} is not whole: {k} keys, found {idx:?}"));
        }
    }
    let increments = seen.txns.values().filter(|t| t.1).count() as u64;
    if seen.counter != increments {
        return Err(format!("the counter is {} but {increments} increments are present", seen.counter));
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pair(key: &[u8], value: &[u8]) -> Pair {
        (key.into(), Arc::from(value))
    }

    fn txn(name: &str, keys: u64, increments: bool) -> Vec<Pair> {
        (0..keys).map(|i| pair(&txn_key(name, i), &txn_value(keys, increments, 3))).collect()
    }

    fn state(txns: &[(&str, u64, bool)]) -> Vec<Pair> {
        let mut pairs: Vec<Pair> = txns.iter().flat_map(|&(n, k, inc)| txn(n, k, inc)).collect();
        let increments = txns.iter().filter(|t| t.2).count();
        if increments > 0 {
            pairs.push(pair(COUNTER, increments.to_string().as_bytes()));
        }
        pairs
    }

    fn history() -> History {
        let mut h = History::default();
        h.sequenced("a", Lsn(1), 2, true, true);
        h.sequenced("b", Lsn(2), 1, false, false);
        h.sequenced("c", Lsn(3), 3, true, true);
        h
    }

    #[test]
    fn a_prefix_with_every_acknowledged_sync_passes_and_settles() {
        let mut h = history();
        h.acknowledged("a");
        assert_eq!(h.check_recovered(&state(&[("a", 2, true), ("b", 1, false)])), Ok(2));
        // c was lost and forgotten; what was kept is settled.
        assert_eq!(h.settled(), ["a", "b"]);
        let err = h.check_recovered(&state(&[("a", 2, true), ("b", 1, false), ("c", 3, true)]));
        assert!(err.unwrap_err().contains("lost at an earlier crash"));
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let mut h = history();
        h.acknowledged("c");
        let err = |h: &mut History, s: Vec<Pair>| h.check_recovered(&s).unwrap_err();
        assert!(err(&mut h.clone(), state(&[("a", 2, true)])).contains("acknowledged Sync transaction c"));
        assert!(err(&mut history(), state(&[("a", 2, true), ("c", 3, true)])).contains("not a prefix"));
        assert!(err(&mut history(), state(&[("z", 1, false)])).contains("never sequenced"));
        assert!(err(&mut history(), state(&[("a", 3, true)])).contains("different contents"));
        let mut torn = state(&[("a", 2, true)]);
        torn.remove(0);
        assert!(err(&mut history(), torn).contains("not whole"));
        let mut lost_update = state(&[("a", 2, true), ("b", 1, false), ("c", 3, true)]);
        lost_update.pop();
        lost_update.push(pair(COUNTER, b"1"));
        assert!(err(&mut history(), lost_update).contains("the counter is 1 but 2 increments"));
        // Recovered once, then gone: a durable transaction lost.
        let mut h = history();
        assert_eq!(h.check_recovered(&state(&[("a", 2, true), ("b", 1, false)])), Ok(2));
        assert!(err(&mut h, state(&[("a", 2, true)])).contains("present at an earlier recovery"));
    }

    #[test]
    fn a_snapshot_must_hold_what_was_settled_before_it() {
        let s = state(&[("a", 2, true)]);
        let mut h = history();
        assert_eq!(h.check_snapshot(&[], &s), Ok(()));
        assert!(
            h.check_snapshot(&["a".into(), "b".into()], &s).unwrap_err().contains("settled transaction b")
        );
        // a, a Sync transaction, was visible: it must survive the next crash.
        let err = h.check_recovered(&state(&[])).unwrap_err();
        assert!(err.contains("Sync transaction a (LSN 1), seen by a snapshot, is missing"), "{err}");
        // b, Buffered, may be visible before it is durable.
        let mut h = history();
        assert_eq!(h.check_snapshot(&[], &state(&[("a", 2, true), ("b", 1, false)])), Ok(()));
        assert_eq!(h.check_recovered(&state(&[("a", 2, true)])), Ok(1));
        assert_eq!(counter_value(None), 0);
        assert_eq!(counter_value(Some(b"7")), 7);
        assert_eq!(counter_value(Some(b"x")), u64::MAX);
    }
}
