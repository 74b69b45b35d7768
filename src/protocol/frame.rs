//! Size-prefixed framing, request encoding and response decoding.
//!
//! Every Kafka frame starts with a 4-byte big-endian size. The size comes from
//! the wire and is never trusted: [`FrameDecoder`] checks it against a cap before
//! reserving any memory for the frame (rskafka's `frame.rs` does the same).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{api_name, ProtocolError};

/// Default cap on one response frame: well above the 50 MiB a default Fetch may
/// return, far below anything that would hurt the process.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 128 * 1024 * 1024;

/// At most this many slices are handed to one `writev` (Linux `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 512;

/// Splits a byte stream into frames without copying them: each frame is a
/// `split_to` of the read buffer.
///
/// Large frames (Fetch responses) get a buffer of their exact size. With musl
/// (the static binary) those buffers are recycled: the decoder keeps a handle
/// on the last [`RECYCLED_FRAMES`] large frames, and once every slice of one has
/// been dropped (all its batches acknowledged) the next large frame is read
/// into the same memory. musl's malloc returns every large block to the kernel
/// on free, so each new frame cost fresh page faults and zeroed pages. glibc
/// already keeps freed blocks of that size, and there recycling only added RSS
/// for no measurable CPU, so it is off (measurements: `docs/design.md`,
/// "Performance notes").
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
    recycle: usize,
    lent: VecDeque<Bytes>,
}

/// Frames at least this large have their buffers recycled.
const RECYCLE_MIN_BYTES: usize = 256 * 1024;
/// How many large frame buffers a decoder keeps a handle on (per connection).
/// Kept small: a recycled buffer that is free still counts in the process's RSS.
pub const RECYCLED_FRAMES: usize = if cfg!(target_env = "musl") { 2 } else { 0 };

impl FrameDecoder {
    /// A decoder that rejects frames above `max_frame` bytes (size prefix excluded).
    pub fn new(max_frame: usize) -> Self {
        Self::with_recycling(max_frame, RECYCLED_FRAMES)
    }

    /// The same, recycling the buffers of up to `frames` large frames.
    pub fn with_recycling(max_frame: usize, frames: usize) -> Self {
        Self {
            max_frame,
            recycle: frames,
            lent: VecDeque::with_capacity(frames),
        }
    }

    /// The cap this decoder enforces.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes one complete frame (without its size prefix) off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case `buf` has room
    /// for the whole frame (allocated at its exact size, not doubled, or a
    /// recycled buffer at least that large), so the next read lands where it
    /// belongs. The announced size is validated first.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        if buf.len() < 4 {
            buf.reserve(4 - buf.len());
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 {
            return Err(ProtocolError::NegativeFrameSize { size });
        }
        let size = size as usize;
        if size > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                limit: self.max_frame,
                actual: size,
            });
        }
        if buf.len() < 4 + size {
            if buf.capacity() < 4 + size {
                // A buffer of exactly the frame's size: `reserve` may double the
                // capacity, and a fetch frame lives as long as its batches.
                let mut exact = self
                    .recycled(4 + size)
                    .unwrap_or_else(|| BytesMut::with_capacity(4 + size));
                exact.extend_from_slice(buf);
                *buf = exact;
            }
            return Ok(None);
        }
        buf.advance(4);
        let frame = buf.split_to(size).freeze();
        if size >= RECYCLE_MIN_BYTES && self.recycle > 0 {
            if self.lent.len() == self.recycle {
                self.lent.pop_front();
            }
            self.lent.push_back(frame.clone());
        }
        Ok(Some(frame))
    }

    /// An empty buffer with room for `need` bytes whose memory held an earlier
    /// frame that nobody references any more.
    fn recycled(&mut self, need: usize) -> Option<BytesMut> {
        if need < RECYCLE_MIN_BYTES {
            return None;
        }
        // The old frame's buffer held its 4-byte size prefix too.
        let i = self.lent.iter().position(|f| f.is_unique() && f.len() + 4 >= need)?;
        let mut reused = self.lent.remove(i)?.try_into_mut().ok()?;
        reused.clear();
        // The buffer is unique and large enough: this moves the start back to
        // the beginning of the allocation instead of allocating.
        reused.reserve(need);
        Some(reused)
    }
}

/// Encodes `header + body` of request `R` at `version`, size prefix included.
pub fn encode_request<R: Request>(
    correlation_id: i32,
    client_id: &str,
    version: i16,
    body: &R,
) -> Result<Bytes, ProtocolError> {
    let err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_name(R::KEY),
        version,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version).map_err(err)? + body.compute_size(version).map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf.freeze())
}

/// Reads the correlation id at the start of a response frame (size prefix already removed).
pub fn response_correlation_id(frame: &[u8]) -> Result<i32, ProtocolError> {
    match frame.get(0..4) {
        Some(b) => Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ProtocolError::ShortFrame { len: frame.len() }),
    }
}

/// Decodes a response frame (size prefix removed) of request `R` sent at `version`.
///
/// Byte fields of the body (a Fetch response's records) are `Bytes` slices of
/// `frame`: decoding copies no payload.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<(ResponseHeader, R::Response), ProtocolError> {
    let err = |e: anyhow::Error| ProtocolError::Decode {
        api: api_name(R::KEY),
        version,
        reason: format!("{e:#}"),
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).map_err(err)?;
    let body = <R::Response as Decodable>::decode(&mut frame, version).map_err(err)?;
    if !frame.is_empty() {
        return Err(ProtocolError::TrailingBytes {
            api: api_name(R::KEY),
            version,
            extra: frame.len(),
        });
    }
    Ok((header, body))
}

/// Writes `chunks` in order with vectored writes, never joining them into one buffer.
pub async fn write_chunks<W: AsyncWrite + Unpin + ?Sized>(writer: &mut W, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut idx = 0; // first chunk not fully written
    let mut offset = 0; // bytes of chunks[idx] already written
    while idx < chunks.len() {
        let end = (idx + MAX_IOVECS).min(chunks.len());
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(end - idx);
        slices.push(IoSlice::new(&chunks[idx][offset..]));
        for c in &chunks[idx + 1..end] {
            slices.push(IoSlice::new(c));
        }
        let mut n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < chunks.len() {
            let left = chunks[idx].len() - offset;
            if n >= left {
                n -= left;
                idx += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
        // skip empty chunks so the first slice is never empty
        while idx < chunks.len() && chunks[idx].len() == offset {
            idx += 1;
            offset = 0;
        }
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_frame_is_rejected_before_allocation() {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.put_i32(i32::MAX);
        let cap_before = buf.capacity();
        let err = dec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::FrameTooLarge {
                limit: 1024,
                actual: i32::MAX as usize
            }
        );
        assert_eq!(buf.capacity(), cap_before, "no memory reserved for the announced size");
    }

    #[test]
    fn negative_frame_is_rejected() {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ProtocolError::NegativeFrameSize { size: -2 })
        ));
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.put_i32(5);
        buf.put_slice(b"abc");
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= 9);
        buf.put_slice(b"de");
        buf.put_i32(0);
        assert_eq!(dec.decode(&mut buf).unwrap().as_deref(), Some(&b"abcde"[..]));
        assert_eq!(dec.decode(&mut buf).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn large_frame_buffers_are_reused_once_every_slice_is_gone() {
        let mut dec = FrameDecoder::with_recycling(8 << 20, 2);
        let frame = |fill: u8| {
            let mut w = BytesMut::new();
            w.put_i32(1 << 20);
            w.put_bytes(fill, 1 << 20);
            w
        };
        let feed = |dec: &mut FrameDecoder, buf: &mut BytesMut, wire: &BytesMut| {
            buf.extend_from_slice(&wire[..4]);
            assert_eq!(dec.decode(buf).unwrap(), None);
            buf.extend_from_slice(&wire[4..]);
            dec.decode(buf).unwrap().unwrap()
        };
        let mut buf = BytesMut::new();
        let first = feed(&mut dec, &mut buf, &frame(1));
        let first_ptr = first.as_ptr();
        let batch = first.slice(100..200); // a batch still queued
        drop(first);
        buf = BytesMut::new();
        let second = feed(&mut dec, &mut buf, &frame(2));
        assert_ne!(
            second.as_ptr(),
            first_ptr,
            "memory still referenced by a batch is not reused"
        );
        assert!(batch.iter().all(|&b| b == 1), "the queued batch is intact");
        drop(batch);
        buf = BytesMut::new();
        let third = feed(&mut dec, &mut buf, &frame(3));
        assert_eq!(third.as_ptr(), first_ptr, "the first frame's memory is reused");
        assert!(third.iter().all(|&b| b == 3));
        assert!(second.iter().all(|&b| b == 2));
        // Small frames are never pooled.
        let mut small = BytesMut::new();
        small.put_i32(3);
        small.put_slice(b"abc");
        assert_eq!(dec.decode(&mut small).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(dec.lent.len(), 2);
        // Without recycling nothing is kept.
        let mut plain = FrameDecoder::with_recycling(8 << 20, 0);
        let mut buf = BytesMut::new();
        drop(feed(&mut plain, &mut buf, &frame(4)));
        assert!(plain.lent.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any sequence of frames, cut into arbitrary read sizes, comes back whole and in order.
        #[test]
        fn framing_round_trips(frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), 0..20),
                               cuts in proptest::collection::vec(1usize..5000, 1..50)) {
            let mut wire = Vec::new();
            for f in &frames {
                wire.extend_from_slice(&(f.len() as i32).to_be_bytes());
                wire.extend_from_slice(f);
            }
            let mut dec = FrameDecoder::new(4096);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut cut = cuts.iter().cycle();
            while pos < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - pos);
                buf.extend_from_slice(&wire[pos..pos + n]);
                pos += n;
                while let Some(f) = dec.decode(&mut buf).unwrap() {
                    out.push(f.to_vec());
                }
            }
            proptest::prop_assert_eq!(out, frames);
            proptest::prop_assert!(buf.is_empty());
        }

        /// Chunks written with write_chunks arrive concatenated, whatever their sizes.
        #[test]
        fn vectored_writes_keep_every_byte(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000), 0..700)) {
            let chunks: Vec<Bytes> = chunks.into_iter().map(Bytes::from).collect();
            let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(async {
                // A tiny pipe forces many partial vectored writes.
                let (mut a, mut b) = tokio::io::duplex(777);
                let reader = tokio::spawn(async move {
                    let mut v = Vec::new();
                    tokio::io::AsyncReadExt::read_to_end(&mut b, &mut v).await.unwrap();
                    v
                });
                write_chunks(&mut a, &chunks).await.unwrap();
                drop(a);
                reader.await.unwrap()
            });
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn short_frame_has_no_correlation_id() {
        assert_eq!(
            response_correlation_id(&[1, 2]),
            Err(ProtocolError::ShortFrame { len: 2 })
        );
        assert_eq!(response_correlation_id(&[0, 0, 1, 2, 9]), Ok(258));
    }
}
