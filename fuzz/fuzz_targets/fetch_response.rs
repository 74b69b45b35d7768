//! Any frame: decoding it as a Fetch response (at the version in the first
//! byte) and splitting its records never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let version = 4 + (data[0] % 15) as i16;
    let frame = bytes::Bytes::copy_from_slice(&data[1..]);
    if let Ok((_, resp)) = strait::protocol::decode_response::<kafka_protocol::messages::FetchRequest>(frame, version) {
        for t in &resp.responses {
            for p in &t.partitions {
                if let Some(r) = &p.records {
                    let _ = strait::batch::split_batches(r);
                }
            }
        }
    }
});
