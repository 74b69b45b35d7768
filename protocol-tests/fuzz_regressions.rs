//! The fuzz targets on the stable toolchain: every target body of
//! `strait::fuzzing` runs over the committed seeds (`fuzz/seeds/<target>/`),
//! every regression input (`fuzz/regressions/<target>/`) and thousands of
//! deterministic mutations of them, so CI exercises what the nightly
//! coverage-guided runs (`fuzz/run.sh`) explore. Regression inputs that once
//! made strait reserve memory sized by a wire count are also checked for what
//! they must do now: fail with an error, the largest allocation staying small.
//!
//! `STRAIT_WRITE_SEEDS=1 cargo test --test fuzz_regressions` rewrites the seeds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use strait::batch::inflate::DEFAULT_MAX_DECOMPRESSED_BYTES;
use strait::batch::testdata;
use strait::batch::{reencode_contiguous, BatchError, RawBatch};
use strait::fuzzing::{self, records};
use strait::protocol::{decode_response, ProtocolError};

/// Records the largest single allocation made by the current thread, so a test
/// can show a decoder never asked for memory sized by a count it was sent.
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// The test binary's allocator only: strait itself stays free of unsafe code.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its result and the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(|l| l.get()))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn committed_seeds_are_current() {
    let seeds = fuzzing::seeds::all(&root().join("protocol-tests/golden"));
    let write = std::env::var_os("STRAIT_WRITE_SEEDS").is_some();
    for (target, name, bytes) in &seeds {
        let path = root().join("fuzz/seeds").join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (STRAIT_WRITE_SEEDS=1 regenerates the seeds)", path.display()));
        assert!(&committed == bytes, "{} is stale", path.display());
    }
    for (target, _) in fuzzing::TARGETS {
        assert!(seeds.iter().any(|(t, _, _)| t == target), "no seed for target {target}");
    }
}

/// One mutation of `input`, chosen by `rng` (the moves of libFuzzer's default
/// mutator: bit flips, interesting values, inserts, erases, splices, truncation).
fn mutate(rng: &mut fastrand::Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..5) {
        let at = rng.usize(..v.len().max(1));
        match rng.u8(..8) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.u8(..8),
            1 if !v.is_empty() => v[at] = rng.u8(..),
            2 if at + 4 <= v.len() => {
                let interesting: [i32; 8] = [0, -1, 1, i32::MAX, i32::MIN, 0x7fff, 0x10000, 0x0fff_ffff];
                v[at..at + 4].copy_from_slice(&interesting[rng.usize(..8)].to_be_bytes());
            }
            3 => {
                let n = rng.usize(1..9);
                let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                v.splice(at.min(v.len())..at.min(v.len()), bytes);
            }
            4 if !v.is_empty() => {
                let end = (at + rng.usize(1..9)).min(v.len());
                v.drain(at..end);
            }
            5 if !other.is_empty() => {
                let from = rng.usize(..other.len());
                let n = rng.usize(1..=(other.len() - from).min(64));
                let at = at.min(v.len());
                v.splice(at..at, other[from..from + n].iter().copied());
            }
            6 => v.truncate(at),
            _ if !v.is_empty() => v[at] = v[at].wrapping_add(rng.u8(1..4)),
            _ => v.push(rng.u8(..)),
        }
    }
    v
}

/// Mutations per target, beyond the seeds and regressions: config parsing
/// compiles regexes, slow in a debug build, so it gets fewer.
fn mutations(target: &str) -> usize {
    match target {
        "config" => 600,
        _ => 3000,
    }
}

#[test]
fn every_target_survives_seeds_regressions_and_mutations() {
    for (i, (name, body)) in fuzzing::TARGETS.iter().enumerate() {
        let started = Instant::now();
        let mut inputs = files(&root().join("fuzz/seeds").join(name));
        let regressions = files(&root().join("fuzz/regressions").join(name));
        assert!(!inputs.is_empty(), "no committed seeds for {name}");
        let corpus: Vec<Vec<u8>> = inputs.iter().chain(&regressions).map(|(_, b)| b.clone()).collect();
        inputs.extend(regressions);
        for (path, input) in &inputs {
            let run = std::panic::catch_unwind(|| body(input));
            assert!(run.is_ok(), "{name} panicked on {}", path.display());
        }
        let mut rng = fastrand::Rng::with_seed(0x5742_4149_5400 + i as u64);
        for n in 0..mutations(name) {
            let base = &corpus[rng.usize(..corpus.len())];
            let other = &corpus[rng.usize(..corpus.len())];
            let input = mutate(&mut rng, base, other);
            let run = std::panic::catch_unwind(|| body(&input));
            assert!(run.is_ok(), "{name} panicked on mutation {n}: {input:02x?}");
        }
        eprintln!(
            "{name}: {} inputs + {} mutations in {:?}",
            inputs.len(),
            mutations(name),
            started.elapsed()
        );
    }
}

/// A frame must fail to decode, and decoding it must not allocate more than a
/// few times its own size.
fn refused_with_bounded_memory<T: std::fmt::Debug>(
    what: &str,
    frame_len: usize,
    decode: impl FnOnce() -> Result<T, String>,
) {
    let (result, largest) = largest_allocation(decode);
    let err = result.expect_err(what);
    assert!(!err.is_empty());
    assert!(
        largest <= 64 * 1024 + 16 * frame_len,
        "{what}: largest allocation {largest} bytes for a {frame_len}-byte frame"
    );
}

#[test]
fn huge_array_counts_are_errors_not_allocations() {
    // ApiVersions v0 response: error_code, then an INT32 array count of i32::MAX
    // and a single element's worth of bytes.
    let mut f = BytesMut::new();
    f.put_i32(1); // correlation id
    f.put_i16(0);
    f.put_i32(i32::MAX);
    f.put_slice(&[0, 18, 0, 0, 0, 3]);
    let frame = f.freeze();
    refused_with_bounded_memory("ApiVersions v0 with 2^31-1 api keys", frame.len(), || {
        decode_response::<ApiVersionsRequest>(frame.clone(), 0).map_err(|e| e.to_string())
    });
    // Metadata v13 (flexible): the brokers COMPACT_ARRAY announces 2^31 entries.
    let mut f = BytesMut::new();
    f.put_i32(1); // correlation id
    f.put_u8(0); // header tagged fields
    f.put_i32(0); // throttle_time_ms
    f.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // unsigned varint 2^31 - 1
    f.put_slice(&[0; 12]);
    let frame = f.freeze();
    refused_with_bounded_memory("Metadata v13 with 2^31-2 brokers", frame.len(), || {
        let err = decode_response::<MetadataRequest>(frame.clone(), 13).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::Decode {
                    api: "Metadata",
                    version: 13,
                    ..
                }
            ),
            "{err:?}"
        );
        Err::<(), _>(err.to_string())
    });
}

#[test]
fn huge_record_and_header_counts_are_errors_not_allocations() {
    // A valid-CRC batch announcing 2^31-1 records holding one.
    let one = records::encode(&[records::Rec {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: None,
        value: Some(b"v".to_vec()),
        headers: vec![],
    }]);
    let header = testdata::Header {
        base_offset: 10,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: 0,
        producer_id: -1,
        record_count: i32::MAX,
    };
    let b = testdata::v2_batch(header, &one);
    refused_with_bounded_memory("re-encoding 2^31-1 announced records", b.len(), || {
        let err = reencode_contiguous(&b, DEFAULT_MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert!(
            err.to_string().contains("header says 2147483647 records, found 1"),
            "{err}"
        );
        Err::<(), _>(err.to_string())
    });
    refused_with_bounded_memory("kafka-protocol decoding 2^31-1 announced records", b.len(), || {
        kafka_protocol::records::RecordBatchDecoder::decode(&mut b.bytes().clone()).map_err(|e| e.to_string())
    });
    // One record announcing 2^31-1 headers.
    let mut rec = vec![0u8, 0, 0, 1, 2, b'v']; // attributes, ts delta, offset delta, null key, value
    rec.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]); // varint header count 2^31-1
    let mut plain = Vec::new();
    plain.push((rec.len() as u8) << 1);
    plain.extend_from_slice(&rec);
    let b = testdata::v2_batch(
        testdata::Header {
            record_count: 1,
            ..header
        },
        &plain,
    );
    refused_with_bounded_memory("kafka-protocol decoding 2^31-1 announced headers", b.len(), || {
        kafka_protocol::records::RecordBatchDecoder::decode(&mut b.bytes().clone()).map_err(|e| e.to_string())
    });
}

#[test]
fn snappy_announcing_gigabytes_is_an_error_not_an_allocation() {
    // Raw snappy: varint length 0xFFFFFFFF, then one literal byte.
    let payload = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, b'x'];
    let b: RawBatch = testdata::v2_batch(
        testdata::Header {
            base_offset: 0,
            attributes: 2, // snappy
            last_offset_delta: 0,
            base_timestamp: 0,
            producer_id: -1,
            record_count: 1,
        },
        &payload,
    );
    refused_with_bounded_memory("re-encoding a 4 GiB snappy announcement", b.len(), || {
        let err = reencode_contiguous(&b, DEFAULT_MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert!(matches!(err, BatchError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot decompress"), "{err}");
        Err::<(), _>(err.to_string())
    });
    // The same for the xerial-framed variant Kafka's Java client writes.
    let mut framed = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let b = testdata::v2_batch(
        testdata::Header {
            base_offset: 0,
            attributes: 2,
            last_offset_delta: 0,
            base_timestamp: 0,
            producer_id: -1,
            record_count: 1,
        },
        &framed,
    );
    refused_with_bounded_memory("re-encoding a framed 4 GiB snappy announcement", b.len(), || {
        reencode_contiguous(&b, DEFAULT_MAX_DECOMPRESSED_BYTES)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn decompression_bombs_stop_at_the_cap_in_every_codec() {
    // Re-encoding a batch whose records inflate far past the cap allocates about
    // the cap, not what the records inflate to: 4 GiB for zstd (hand-built from
    // RLE blocks), 64 MiB for the codecs built by compressing zeros.
    let cap = 1 << 20;
    let header = |codec: u8, n: usize| testdata::Header {
        base_offset: 70,
        attributes: codec as i16,
        last_offset_delta: n as i32 + 2, // a compaction gap: the batch needs a re-encode
        base_timestamp: 0,
        producer_id: -1,
        record_count: n as i32,
    };
    let zstd = testdata::v2_batch(header(4, 4), &testdata::zstd_zero_records(&[1 << 30; 4]));
    let mut bombs = vec![("zstd, 4 GiB", zstd)];
    let plain = records::encode(
        &(0..64)
            .map(|i| records::Rec {
                attributes: 0,
                timestamp_delta: 0,
                offset_delta: i,
                key: None,
                value: Some(vec![0; 1 << 20]),
                headers: vec![],
            })
            .collect::<Vec<_>>(),
    );
    for (codec, name) in [(1u8, "gzip, 64 MiB"), (2, "snappy, 64 MiB"), (3, "lz4, 64 MiB")] {
        let packed = strait::batch::reencode::compress(codec, &plain).unwrap();
        bombs.push((name, testdata::v2_batch(header(codec, 64), &packed)));
    }
    for (name, b) in bombs {
        let started = Instant::now();
        let (result, largest) = largest_allocation(|| reencode_contiguous(&b, cap));
        assert_eq!(
            result.unwrap_err(),
            BatchError::TooLargeDecompressed {
                base_offset: 70,
                limit: cap
            },
            "{name}"
        );
        // The output buffer stops at the cap. (The C decoders' own state, bounded by
        // their formats, is not allocated through Rust's allocator.)
        assert!(
            largest <= cap + (64 << 10),
            "{name}: largest allocation {largest} bytes for a {}-byte batch",
            b.len()
        );
        eprintln!(
            "{name}: {} bytes compressed, refused in {:?}, largest allocation {largest} bytes",
            b.len(),
            started.elapsed()
        );
    }
}
