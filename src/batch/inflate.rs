//! Bounded decompression for the slow paths (re-encoding, coalescing,
//! up-conversion).
//!
//! A compressed batch is small on the wire but can inflate a thousandfold and
//! more: a zstd RLE block regenerates 128 KiB from 4 bytes, so a 130 KB batch of a
//! broken or hostile source can hold 4 GiB of records. Every slow path therefore
//! decompresses through here: output stops with [`InflateError::TooLarge`] as soon
//! as it would pass `limit` (`max_decompressed_batch_bytes`), and the buffer never
//! grows past the limit. Snappy announces its decompressed length up front; the
//! announcement is checked against what snappy can expand to and against the
//! limit before anything is allocated. The decoders keep their own bounded state
//! (zstd's window is capped by libzstd at 128 MiB, deflate's is 32 KiB, an lz4
//! frame's blocks are at most 4 MiB).
//!
//! Formats follow Kafka's Java client (`org.apache.kafka.common.compress`):
//! gzip may hold several members (`GZIPInputStream` reads them all), snappy is
//! xerial-framed (`SnappyInputStream`) or raw, lz4 is the LZ4 frame format and
//! zstd a stream of frames. Uncompressed payloads are returned as they are: they
//! take no more memory than the fetch response holding them.

use std::io::Read;

use bytes::Bytes;

use super::BatchError;

/// Default of `max_decompressed_batch_bytes`: 256 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// Read size of the bounded reader.
const CHUNK: usize = 64 * 1024;

/// The xerial snappy-java stream header (magic, version 1, compatible version 1),
/// as Kafka's Java client writes it.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// No snappy element expands more than 64/3 times (a 3-byte copy of 64 bytes): a
/// larger announced length is a lie.
const SNAPPY_MAX_EXPANSION: usize = 22;

/// Why a payload did not decompress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The output would pass the limit; decompression stopped there.
    #[error("decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    /// The payload is not valid for its codec.
    #[error("{reason}")]
    Corrupt { reason: String },
    /// A codec id Kafka does not define.
    #[error("unknown compression codec {codec}")]
    UnknownCodec { codec: u8 },
}

fn corrupt(reason: impl std::fmt::Display) -> InflateError {
    InflateError::Corrupt {
        reason: reason.to_string(),
    }
}

/// Decompresses `payload` (codec id 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd),
/// producing at most `limit` bytes.
pub fn decompress(codec: u8, payload: Bytes, limit: usize) -> Result<Bytes, InflateError> {
    // A first guess at the output size; the buffer grows (up to the limit) from there.
    let hint = payload.len().saturating_mul(4);
    let out = match codec {
        0 => return Ok(payload),
        1 => read_bounded(flate2::read::MultiGzDecoder::new(&payload[..]), limit, hint)?,
        2 => snappy(&payload, limit)?,
        3 => {
            let mut d = lz4::Decoder::new(&payload[..]).map_err(corrupt)?;
            let out = read_bounded(&mut d, limit, hint)?;
            // The decoder ends quietly where its input does, frame complete or not.
            d.finish().1.map_err(|_| corrupt("lz4: truncated frame"))?;
            out
        }
        4 => read_bounded(
            zstd::stream::read::Decoder::with_buffer(&payload[..]).map_err(corrupt)?,
            limit,
            hint,
        )?,
        c => return Err(InflateError::UnknownCodec { codec: c }),
    };
    Ok(Bytes::from(out))
}

/// [`decompress`] for the records section of the batch at `base_offset`, with
/// the batch's errors: [`BatchError::TooLargeDecompressed`] over the limit,
/// [`BatchError::Malformed`] ("cannot decompress") otherwise.
pub(crate) fn decompress_records(
    codec: u8,
    payload: Bytes,
    limit: usize,
    base_offset: i64,
) -> Result<Bytes, BatchError> {
    decompress(codec, payload, limit).map_err(|e| match e {
        InflateError::TooLarge { limit } => BatchError::TooLargeDecompressed { base_offset, limit },
        e => BatchError::Malformed {
            base_offset,
            reason: format!("cannot decompress: {e}"),
        },
    })
}

/// Reads `r` to its end into a buffer that never grows past `limit`. Reads go
/// straight into the buffer, at most [`CHUNK`] bytes at a time: a small batch
/// costs no large scratch buffer, and each read zeroes at most that much.
fn read_bounded(mut r: impl Read, limit: usize, hint: usize) -> Result<Vec<u8>, InflateError> {
    let mut out: Vec<u8> = Vec::with_capacity(hint.min(limit));
    loop {
        if out.len() == limit {
            // Full: one more byte is one too many.
            let mut probe = [0u8; 1];
            return match read_some(&mut r, &mut probe)? {
                0 => Ok(out),
                _ => Err(InflateError::TooLarge { limit }),
            };
        }
        grow_for(&mut out, 1, limit);
        let start = out.len();
        let window = (out.capacity() - start).min(CHUNK);
        out.resize(start + window, 0);
        let n = read_some(&mut r, &mut out[start..])?;
        out.truncate(start + n);
        if n == 0 {
            return Ok(out);
        }
    }
}

/// One `read`, retried when interrupted.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, InflateError> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other.map_err(corrupt),
        }
    }
}

/// Makes room for `n` more bytes in `out` (`out.len() + n <= limit`): doubling,
/// but never reserving past `limit`.
fn grow_for(out: &mut Vec<u8>, n: usize, limit: usize) {
    if out.capacity() - out.len() >= n {
        return;
    }
    let want = out
        .capacity()
        .saturating_mul(2)
        .max(out.len() + n)
        .max(CHUNK)
        .min(limit);
    out.reserve_exact(want - out.len());
}

/// Snappy, xerial-framed (`[header][u32 length][block]...`) or raw, like
/// `SnappyInputStream`, which falls back to raw snappy without the header.
fn snappy(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let Some(mut rest) = payload.strip_prefix(&XERIAL_HEADER[..]) else {
        snappy_block(payload, &mut out, limit)?;
        return Ok(out);
    };
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(corrupt("snappy: truncated block length"));
        }
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if len > tail.len() {
            return Err(corrupt(format!("snappy: block of {len} bytes, {} left", tail.len())));
        }
        let (block, tail) = tail.split_at(len);
        snappy_block(block, &mut out, limit)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its announced length first.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
    let n = snap::raw::decompress_len(block).map_err(|e| corrupt(format!("snappy: {e}")))?;
    if n > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(corrupt(format!(
            "snappy: block announces {n} bytes from {} compressed bytes, more than snappy can expand",
            block.len()
        )));
    }
    if n > limit - out.len() {
        return Err(InflateError::TooLarge { limit });
    }
    grow_for(out, n, limit);
    let start = out.len();
    out.resize(start + n, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt(format!("snappy: {e}")))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::reencode::compress;
    use crate::batch::testdata::{zstd_frame, ZstdPart};
    use proptest::prelude::*;

    const CODECS: [u8; 4] = [1, 2, 3, 4];

    /// Bytes that compress well (so a small payload inflates far) but not trivially.
    fn compressible(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i / 1000 % 7) as u8).collect()
    }

    #[test]
    fn every_codec_stops_at_the_limit() {
        let plain = compressible(1 << 20);
        for codec in CODECS {
            let packed = compress(codec, &plain).unwrap();
            assert!(packed.len() < plain.len() / 20, "codec {codec}: {}", packed.len());
            let got = decompress(codec, packed.clone(), plain.len()).unwrap();
            assert_eq!(&got[..], &plain[..], "codec {codec}");
            for limit in [0, 1, CHUNK - 1, CHUNK, plain.len() / 2, plain.len() - 1] {
                assert_eq!(
                    decompress(codec, packed.clone(), limit),
                    Err(InflateError::TooLarge { limit }),
                    "codec {codec}, limit {limit}"
                );
            }
        }
        // Nothing inflates without a codec: the payload comes back as it is.
        let raw = Bytes::from(plain);
        let same = decompress(0, raw.clone(), 0).unwrap();
        assert_eq!(same.as_ptr(), raw.as_ptr());
    }

    #[test]
    fn buffer_never_grows_past_the_limit() {
        let plain = compressible(3 << 20);
        for codec in CODECS {
            let packed = compress(codec, &plain).unwrap();
            let limit = plain.len();
            // What read_bounded and snappy() keep: at most the limit, never a doubling past it.
            let out = match codec {
                2 => snappy(&packed, limit).unwrap(),
                1 => read_bounded(flate2::read::MultiGzDecoder::new(&packed[..]), limit, 0).unwrap(),
                3 => read_bounded(lz4::Decoder::new(&packed[..]).unwrap(), limit, 0).unwrap(),
                _ => read_bounded(zstd::stream::read::Decoder::new(&packed[..]).unwrap(), limit, 0).unwrap(),
            };
            assert_eq!(out.len(), limit);
            assert!(out.capacity() <= limit, "codec {codec}: capacity {}", out.capacity());
        }
    }

    #[test]
    fn zstd_frame_of_4_gib_stops_at_the_limit() {
        // 4 GiB of zeros in RLE blocks: 128 KiB of frame.
        let frame = zstd_frame(&[ZstdPart::Raw(b"head"), ZstdPart::Zeros(4 << 30), ZstdPart::Raw(b"tail")]);
        assert!(frame.len() < 200 * 1024, "{}", frame.len());
        let t = std::time::Instant::now();
        assert_eq!(
            decompress(4, Bytes::from(frame), 1 << 20),
            Err(InflateError::TooLarge { limit: 1 << 20 })
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        // The hand-built frame is valid zstd: a small one decodes to what it says.
        let small = zstd_frame(&[ZstdPart::Raw(b"head"), ZstdPart::Zeros(300_000), ZstdPart::Raw(b"tail")]);
        let got = decompress(4, Bytes::from(small), 1 << 20).unwrap();
        assert_eq!(got.len(), 300_008);
        assert_eq!((&got[..4], &got[300_004..]), (&b"head"[..], &b"tail"[..]));
        assert!(got[4..300_004].iter().all(|b| *b == 0));
    }

    #[test]
    fn snappy_announcements_are_checked_before_allocating() {
        // Raw snappy announcing 4 GiB (varint 0xFFFFFFFF) with one literal byte.
        let lie = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, b'x'];
        let e = decompress(2, Bytes::copy_from_slice(&lie), usize::MAX).unwrap_err();
        assert!(e.to_string().contains("more than snappy can expand"), "{e}");
        // The same inside the xerial framing.
        let mut framed = XERIAL_HEADER.to_vec();
        framed.extend_from_slice(&(lie.len() as u32).to_be_bytes());
        framed.extend_from_slice(&lie);
        let e = decompress(2, Bytes::from(framed), usize::MAX).unwrap_err();
        assert!(e.to_string().contains("more than snappy can expand"), "{e}");
        // A truthful announcement over the limit is refused before decoding.
        let packed = snap::raw::Encoder::new().compress_vec(&vec![0u8; 1 << 20]).unwrap();
        assert_eq!(
            decompress(2, Bytes::from(packed.clone()), 1000),
            Err(InflateError::TooLarge { limit: 1000 })
        );
        assert_eq!(decompress(2, Bytes::from(packed), 1 << 20).unwrap().len(), 1 << 20);
        // Framed blocks count together: two blocks of 32 KiB under a limit of 40 KiB.
        let packed = compress(2, &compressible(64 * 1024)).unwrap();
        assert!(packed.starts_with(XERIAL_HEADER));
        assert_eq!(
            decompress(2, packed, 40 * 1024),
            Err(InflateError::TooLarge { limit: 40 * 1024 })
        );
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        for codec in CODECS {
            let mut packed = compress(codec, &compressible(100_000)).unwrap().to_vec();
            packed.truncate(packed.len() / 2);
            let e = decompress(codec, Bytes::from(packed), 1 << 20).unwrap_err();
            assert!(matches!(e, InflateError::Corrupt { .. }), "codec {codec}: {e:?}");
        }
        assert_eq!(
            decompress(5, Bytes::from_static(b"x"), 10),
            Err(InflateError::UnknownCodec { codec: 5 })
        );
    }

    #[test]
    fn gzip_members_are_all_read() {
        // GZIPInputStream reads concatenated members; so does the bounded reader.
        let mut two = compress(1, b"first ").unwrap().to_vec();
        two.extend_from_slice(&compress(1, b"second").unwrap());
        assert_eq!(&decompress(1, Bytes::from(two), 100).unwrap()[..], b"first second");
    }

    proptest! {
        #[test]
        fn round_trips_under_and_stops_over_the_limit(
            plain in proptest::collection::vec(0u8..4, 0..20_000),
            codec in 1u8..=4,
        ) {
            let packed = compress(codec, &plain).unwrap();
            let got = decompress(codec, packed.clone(), plain.len()).unwrap();
            prop_assert_eq!(&got[..], &plain[..]);
            if !plain.is_empty() {
                prop_assert_eq!(
                    decompress(codec, packed, plain.len() - 1),
                    Err(InflateError::TooLarge { limit: plain.len() - 1 })
                );
            }
        }
    }
}
