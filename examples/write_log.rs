//! Writes a small log into the directory given as the first argument: `cargo run --example
//! write_log -- /tmp/db` then `waldb wal dump /tmp/db`.

use waldb::wal::{LogWriter, Op, RecordKind, WalOptions, encode_txn};
use waldb::{StdDisk, TxnId};

fn main() -> waldb::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "waldb-example".to_owned());
    let wal = std::path::Path::new(&dir).join("wal");
    let opts =
        WalOptions::default().with_segment_bytes(64 * 1024).with_record_payload_bytes_max(Some(16 * 1024));
    let (mut log, report) = LogWriter::open(StdDisk, &wal, opts)?;
    println!("recovered {} records, end {:?}", report.records, report.end);
    for i in 0..5u64 {
        let key = format!("key-{i}");
        let mut payload = Vec::new();
        encode_txn(&mut payload, TxnId(i), &[Op::Put { key: key.as_bytes(), value: b"value" }]);
        log.append(RecordKind::Txn, &payload)?;
        log.sync()?;
    }
    println!("durable through LSN {}", log.close()?);
    Ok(())
}
