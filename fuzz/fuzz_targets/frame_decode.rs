//! Any byte stream: the frame decoder returns frames or one error, never panics
//! and never reserves more than its cap.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dec = strait::protocol::FrameDecoder::new(1 << 16);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(_)) = dec.decode(&mut buf) {}
    assert!(buf.capacity() <= data.len().max(4) + (1 << 16) + 4);
});
