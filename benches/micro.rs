//! Micro-benchmarks of the fast path, reported as throughput.
//!
//! `cargo bench --bench micro`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use strait::batch::split_batches;
use strait::protocol::produce::encode_produce;
use strait::protocol::{ProducePartition, ProduceTopic};

/// A blob of `batches` v2 batches of `per_batch` 1 KiB records, like a Fetch response's records.
fn fetch_blob(batches: usize, per_batch: usize) -> Bytes {
    let mut buf = BytesMut::new();
    for b in 0..batches {
        let records: Vec<Record> = (0..per_batch)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: (b * per_batch + i) as i64,
                sequence: (b * per_batch + i) as i32,
                timestamp: 1_700_000_000_000,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'x'; 1024])),
                headers: Default::default(),
            })
            .collect();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
    }
    buf.freeze()
}

fn split(c: &mut Criterion) {
    let blob = fetch_blob(64, 16);
    let mut g = c.benchmark_group("split_batches");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("64x16KiB", |b| b.iter(|| split_batches(&blob).unwrap()));
    g.finish();
}

fn produce_encode(c: &mut Criterion) {
    let blob = fetch_blob(64, 16);
    let (batches, _) = split_batches(&blob).unwrap();
    let topics: Vec<ProduceTopic> = (0..8)
        .map(|t| ProduceTopic {
            name: format!("topic-{t}"),
            topic_id: uuid::Uuid::nil(),
            partitions: batches
                .iter()
                .skip(t * 8)
                .take(8)
                .enumerate()
                .map(|(p, b)| ProducePartition::whole(p as i32, b.bytes().clone()))
                .collect(),
        })
        .collect();
    let mut g = c.benchmark_group("produce_encode_zero_copy");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("64 partitions", |b| {
        b.iter_batched(
            || topics.clone(),
            |t| encode_produce(1, "strait", 11, None, -1, 30_000, &t).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, split, produce_encode);
criterion_main!(benches);
