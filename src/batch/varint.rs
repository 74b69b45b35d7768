//! Zig-zag varints of the v2 record format (`ByteUtils.readVarint` in Kafka).

/// Reads a zig-zag varint (i32), advancing `buf`; `None` when malformed or short.
pub fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let v = read_raw(buf, 5)?;
    let v = v as u32;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Reads a zig-zag varlong (i64), advancing `buf`.
pub fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let v = read_raw(buf, 10)?;
    Some(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn read_raw(buf: &mut &[u8], max_bytes: usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let b = *buf.get(i)?;
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

/// Appends a zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_raw(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// Appends a zig-zag varlong.
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_raw(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_raw(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn round_trip(a in proptest::prelude::any::<i32>(), b in proptest::prelude::any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, a);
            put_varlong(&mut out, b);
            let mut s = &out[..];
            proptest::prop_assert_eq!(read_varint(&mut s), Some(a));
            proptest::prop_assert_eq!(read_varlong(&mut s), Some(b));
            proptest::prop_assert!(s.is_empty());
        }
    }
}
