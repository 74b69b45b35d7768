//! Any records blob: splitting returns whole batches covering a prefix, or one error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let blob = bytes::Bytes::copy_from_slice(data);
    if let Ok((batches, rest)) = strait::batch::split_batches(&blob) {
        let covered: usize = batches.iter().map(|b| b.len()).sum();
        assert_eq!(covered + rest, data.len());
        for b in &batches {
            let _ = (b.codec(), b.last_offset(), b.is_control(), b.attributes());
        }
    }
});
