//! Micro-benchmarks of the fast path, reported as throughput (bytes/s).
//!
//! `cargo bench --bench micro`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use strait::batch::writer::{simple_record, write_batch, BatchSpec, RecordSpec};
use strait::batch::{crc_is_valid, patch_for_produce, reencode_contiguous, split_batches, ProducerStamp};
use strait::protocol::produce::encode_produce;
use strait::protocol::{decode_response, ProducePartition, ProduceTopic};

/// A blob of `batches` v2 batches of `per_batch` 1 KiB records, like a Fetch response's records.
fn fetch_blob(batches: usize, per_batch: usize, codec: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    for b in 0..batches {
        let records: Vec<Record> = (0..per_batch)
            .map(|i| {
                let n = (b * per_batch + i) as i64;
                let value: Vec<u8> = (0..1024).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
                simple_record(
                    n,
                    1_700_000_000_000,
                    Some(Bytes::from(format!("key-{i}"))),
                    Some(Bytes::from(value)),
                )
            })
            .collect();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
    }
    buf.freeze()
}

fn split(c: &mut Criterion) {
    let blob = fetch_blob(64, 16, Compression::None);
    let mut g = c.benchmark_group("split_batches");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("64 batches x 16 KiB", |b| b.iter(|| split_batches(&blob).unwrap()));
    g.finish();
}

fn header_patch(c: &mut Criterion) {
    let blob = fetch_blob(1, 256, Compression::None); // one 256 KiB batch
    let (batches, _) = split_batches(&blob).unwrap();
    let batch = &batches[0];
    let stamp = ProducerStamp {
        producer_id: 42,
        producer_epoch: 1,
        transactional: false,
    };
    let mut g = c.benchmark_group("header_rewrite_256KiB_batch");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("patch + linear CRC fix-up", |b| {
        b.iter(|| patch_for_produce(batch, stamp, 7))
    });
    g.bench_function("full CRC-32C verify pass", |b| b.iter(|| crc_is_valid(batch)));
    g.bench_function("patch + full CRC recompute", |b| {
        b.iter(|| {
            let p = patch_for_produce(batch, stamp, 7);
            let mut crc = crc32c::crc32c(&p.header[21..]);
            crc = crc32c::crc32c_append(crc, &p.body);
            crc
        })
    });
    g.finish();
}

fn fetch_decode(c: &mut Criterion) {
    let version = 12;
    let resp = FetchResponse::default().with_responses(
        (0..8)
            .map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))))
                    .with_partitions(
                        (0..4)
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p)
                                    .with_records(Some(fetch_blob(4, 16, Compression::Lz4)))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let mut frame = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(1)
        .encode(&mut frame, FetchResponse::header_version(version))
        .unwrap();
    resp.encode(&mut frame, version).unwrap();
    let frame = frame.freeze();
    let mut g = c.benchmark_group("fetch_response_decode");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("32 partitions, lz4", |b| {
        b.iter(|| decode_response::<FetchRequest>(frame.clone(), version).unwrap())
    });
    g.finish();
}

fn produce_encode(c: &mut Criterion) {
    let blob = fetch_blob(64, 16, Compression::None);
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
    g.bench_function("64 partitions x 16 KiB", |b| {
        b.iter_batched(
            || topics.clone(),
            |t| encode_produce(1, "strait", 11, None, -1, 30_000, &t).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn slow_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("slow_path_reencode_compacted");
    for (codec, name) in [(0u8, "none"), (3u8, "lz4")] {
        // 256 survivors of 1 KiB at every other offset.
        let records: Vec<RecordSpec> = (0..256)
            .map(|i| RecordSpec {
                offset_delta: i * 2,
                key: Some(format!("k{i}").into_bytes()),
                value: Some((0..1024).map(|j| ((i as usize * 31 + j * 7) % 251) as u8).collect()),
                headers: vec![("h".into(), Some(b"1".to_vec())), ("h".into(), Some(b"2".to_vec()))],
            })
            .collect();
        let b = write_batch(
            &BatchSpec {
                codec,
                last_offset_delta: Some(511),
                ..Default::default()
            },
            &records,
        );
        let plain: usize = 256 * 1040;
        g.throughput(Throughput::Bytes(plain as u64));
        g.bench_function(name, |bn| {
            bn.iter(|| reencode_contiguous(&b, strait::batch::inflate::DEFAULT_MAX_DECOMPRESSED_BYTES).unwrap())
        });
    }
    g.finish();
}

/// The provenance check a flow does for every fetched batch (identity names):
/// the batch's producer id looked up among the decisions already made. 64
/// batches of 16 KiB from 8 producers (2 of them strait's), against
/// splitting the same response alone.
fn provenance_check(c: &mut Criterion) {
    use strait::replicate::provenance::{rule, Decisions, Origin};
    let mut blob = BytesMut::new();
    for i in 0..64i64 {
        let records: Vec<RecordSpec> = (0..16)
            .map(|r| RecordSpec {
                offset_delta: r,
                key: Some(format!("k{r}").into_bytes()),
                value: Some(vec![7u8; 1024]),
                headers: vec![],
            })
            .collect();
        blob.extend_from_slice(
            write_batch(
                &BatchSpec {
                    base_offset: i * 16,
                    producer_id: 1000 + i % 8,
                    ..Default::default()
                },
                &records,
            )
            .bytes(),
        );
    }
    let blob = blob.freeze();
    let decisions = Decisions::default();
    let strait_wrote = Origin {
        origin: "west".into(),
        flow: "west-to-east".into(),
    };
    for pid in 1000..1008 {
        let origin = (pid >= 1006).then_some(&strait_wrote);
        decisions.insert(pid, rule(origin, &[], "west"));
    }
    let mut g = c.benchmark_group("provenance_check");
    g.throughput(Throughput::Elements(64));
    g.bench_function("split 64 batches", |b| b.iter(|| split_batches(&blob).unwrap().0.len()));
    g.bench_function("split 64 batches + decide each", |b| {
        b.iter(|| {
            let (batches, _) = split_batches(&blob).unwrap();
            batches
                .iter()
                .filter(|x| decisions.get(x.producer_id()) != Some(strait::replicate::provenance::Decision::Skip))
                .count()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    split,
    header_patch,
    fetch_decode,
    produce_encode,
    slow_path,
    provenance_check
);
criterion_main!(benches);
