//! Codec and recovery throughput: `cargo bench --bench decode`.
//!
//! - `decode/<size>`: the pure record decoder walking a buffer of records (CRC32C included);
//! - `encode/<size>`: the record encoder into a reused buffer;
//! - `recover/32MiB`: `LogReader` over a 32 MiB log on the real filesystem (page cache warm:
//!   this is the CPU cost of recovery, not the disk's).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use waldb::wal::{self, DecodeLimits, Decoded, LogWriter, ReadOptions, RecordKind, RecordMeta, WalOptions};
use waldb::{Lsn, SegmentId, StdDisk};

const SEGMENT: SegmentId = SegmentId(1);

fn records(payload_bytes: usize, total_bytes: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_bytes).map(|i| (i * 7) as u8).collect();
    let mut buf = Vec::with_capacity(total_bytes + payload_bytes + 64);
    let mut lsn = 1;
    while buf.len() < total_bytes {
        let meta = RecordMeta { lsn: Lsn(lsn), segment: SEGMENT, synced_lsn: Lsn(lsn - 1), kind: 0x80 };
        wal::encode_record(&mut buf, meta, &payload);
        lsn += 1;
    }
    buf
}

fn decode_all(buf: &[u8]) -> usize {
    let limits = DecodeLimits { segment: SEGMENT, payload_bytes_max: 1 << 20 };
    let (mut at, mut n) = (0, 0);
    while let Decoded::Record(r) = wal::decode_record(&buf[at..], &limits) {
        at += r.encoded_len();
        n += 1;
    }
    assert_eq!(at, buf.len(), "every record decodes");
    n
}

fn codec(c: &mut Criterion) {
    for payload_bytes in [100usize, 4096] {
        let buf = records(payload_bytes, 4 << 20);
        let mut g = c.benchmark_group("decode");
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(format!("{payload_bytes}B"), |b| b.iter(|| decode_all(black_box(&buf))));
        g.finish();

        let payload = vec![7u8; payload_bytes];
        let per_iter = 1024;
        let mut out = Vec::with_capacity(per_iter * (payload_bytes + 40));
        let mut g = c.benchmark_group("encode");
        g.throughput(Throughput::Bytes((per_iter * (payload_bytes + 40)) as u64));
        g.bench_function(format!("{payload_bytes}B"), |b| {
            b.iter(|| {
                out.clear();
                for i in 0..per_iter as u64 {
                    let meta =
                        RecordMeta { lsn: Lsn(i + 1), segment: SEGMENT, synced_lsn: Lsn(i), kind: 0x80 };
                    wal::encode_record(&mut out, meta, black_box(&payload));
                }
                out.len()
            })
        });
        g.finish();
    }
}

fn recover(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let opts = WalOptions::default().with_segment_bytes(8 << 20).with_record_payload_bytes_max(Some(1 << 20));
    let (mut w, _) = LogWriter::open(StdDisk, &dir, opts).unwrap();
    let payload = vec![3u8; 4096];
    let mut bytes = 0u64;
    while bytes < 32 << 20 {
        w.append(RecordKind::Unknown(0x80), &payload).unwrap();
        bytes += 4096 + 40;
    }
    w.close().unwrap();
    let mut g = c.benchmark_group("recover");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("32MiB", |b| {
        b.iter(|| {
            // As a database replays: records borrowed from the segment buffer, not copied.
            let mut n = 0u64;
            let reader = wal::LogReader::open(StdDisk, &dir, ReadOptions::default()).unwrap();
            reader
                .for_each(|r| {
                    n += r.payload.len() as u64;
                    Ok(())
                })
                .unwrap();
            n
        })
    });
    g.finish();
}

criterion_group!(benches, codec, recover);
criterion_main!(benches);
