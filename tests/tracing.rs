//! The `tracing` spans and events a user's subscriber sees: an open and a checkpoint are spans
//! and report what they did, a failed sync reports once that the log is poisoned (`error`). One test
//! in its own binary: tracing caches each event's interest when it is first reached, and a test
//! running beside it on another thread, with no subscriber, could reach it first.

use std::sync::{Arc, Mutex};

use waldb::sim::{FaultOp, SimDisk};
use waldb::wal::Driver;
use waldb::{Db, DbOptions, SystemClock};

/// Events, as a subscriber sees them: (level, message).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String)>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let meta = span.metadata();
        self.0.lock().unwrap().push((*meta.level(), format!("span {}", meta.name())));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push((*event.metadata().level(), message.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// An open is a span and logs how recovery ended and what it loaded (`info`); a checkpoint is
/// a span and logs what it wrote (`debug`); a failed sync logs, once, that the log is poisoned
/// (`error`).
#[test]
fn an_open_a_checkpoint_and_a_poisoned_log_are_traced() {
    let events = Events::default();
    tracing::subscriber::with_default(events.clone(), || {
        let disk = SimDisk::new(5);
        let options = DbOptions::default().with_segment_bytes(64 << 10).with_driver(Driver::Manual);
        let (db, _) = Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap();
        let mut txn = db.begin().unwrap();
        txn.put(b"first", b"v").unwrap();
        let commit = txn.commit();
        db.flush_step().unwrap();
        commit.wait().unwrap();
        db.checkpoint().unwrap();
        disk.fail_nth_with(FaultOp::Sync, 1, std::io::ErrorKind::Other);
        for key in [&b"a"[..], b"b"] {
            let mut txn = db.begin().unwrap();
            txn.put(key, b"v").unwrap();
            let commit = txn.commit();
            let _ = db.flush_step();
            assert!(commit.wait().is_err());
        }
    });
    let events = events.0.lock().unwrap();
    let count = |level: tracing::Level, text: &str| {
        events.iter().filter(|(l, m)| *l == level && m.contains(text)).count()
    };
    assert_eq!(count(tracing::Level::INFO, "span waldb::open"), 1, "{events:?}");
    assert_eq!(count(tracing::Level::INFO, "database opened"), 1, "{events:?}");
    assert_eq!(count(tracing::Level::INFO, "log recovered"), 1, "{events:?}");
    assert_eq!(count(tracing::Level::DEBUG, "span waldb::checkpoint"), 1, "{events:?}");
    assert_eq!(count(tracing::Level::DEBUG, "flushed"), 1, "{events:?}");
    assert_eq!(count(tracing::Level::ERROR, "poisoned"), 1, "once, at the first failure: {events:?}");
}
