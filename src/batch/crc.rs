//! CRC-32C linearity helpers: fix a batch CRC after patching a few header bytes
//! without reading the payload again.
//!
//! For equal-length messages `crc(A ^ B) = crc(A) ^ crc(B) ^ crc(0ⁿ)`. So when a
//! patch changes bytes only inside the first `k` bytes of an `n`-byte message,
//! `crc(new) = crc(old) ^ raw(D)·x^(8(n-k))`, where `D` is the XOR of old and new
//! `k`-byte prefixes and `raw` is the CRC without pre/post conditioning. The
//! shift by `n-k` zero bytes is a multiplication by a power of x modulo the
//! Castagnoli polynomial, computed from a table of x^(2^i) (the method of
//! zlib's `crc32_combine`): microseconds less than `crc32c::crc32c_combine`,
//! which pays per call for its setup.

/// Reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `a · b mod P` in the reflected bit order CRC-32C uses.
const fn mult_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `X2N[i] = x^(2^i) mod P`.
const fn x2n_table() -> [u32; 32] {
    let mut t = [0u32; 32];
    let mut p: u32 = 1 << 30; // x^1
    t[0] = p;
    let mut i = 1;
    while i < 32 {
        p = mult_mod_p(p, p);
        t[i] = p;
        i += 1;
    }
    t
}

static X2N: [u32; 32] = x2n_table();

/// `x^(8·n) mod P`: the operator that appends `n` zero bytes to a raw CRC.
fn x8n_mod_p(mut n: u64) -> u32 {
    let mut p: u32 = 1 << 31; // x^0
    let mut k = 3; // 2^3 = 8 bits per byte
    while n != 0 {
        if n & 1 != 0 {
            p = mult_mod_p(X2N[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// The CRC-32C of `old` bytes with their first `old_prefix.len()` bytes replaced by
/// `new_prefix`, computed from the old CRC alone. `total_len` is the length of the
/// whole checksummed range.
pub fn fix_crc(old_crc: u32, old_prefix: &[u8], new_prefix: &[u8], total_len: usize) -> u32 {
    debug_assert_eq!(old_prefix.len(), new_prefix.len());
    let k = old_prefix.len();
    let mut diff = [0u8; 64];
    assert!(k <= diff.len(), "patch prefix longer than 64 bytes");
    let mut any = false;
    for i in 0..k {
        diff[i] = old_prefix[i] ^ new_prefix[i];
        any |= diff[i] != 0;
    }
    if !any {
        return old_crc;
    }
    // raw(D) = crc32c(D) ^ crc32c(0^k)
    let raw = crc32c::crc32c(&diff[..k]) ^ crc32c::crc32c(&[0u8; 64][..k]);
    old_crc ^ mult_mod_p(x8n_mod_p((total_len - k) as u64), raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn fix_equals_full_recompute(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 40..5000),
                                     patch in proptest::collection::vec(proptest::prelude::any::<u8>(), 36)) {
            let old_crc = crc32c::crc32c(&data);
            let mut new = data.clone();
            new[..36].copy_from_slice(&patch);
            let fixed = fix_crc(old_crc, &data[..36], &new[..36], data.len());
            proptest::prop_assert_eq!(fixed, crc32c::crc32c(&new));
        }
    }

    #[test]
    fn corruption_is_carried_forward() {
        // A flipped payload bit keeps the CRC wrong after a fix-up: the broker still rejects it.
        let data = vec![7u8; 1000];
        let crc = crc32c::crc32c(&data);
        let mut corrupted = data.clone();
        corrupted[500] ^= 1;
        let mut patched = corrupted.clone();
        patched[..4].copy_from_slice(&[1, 2, 3, 4]);
        let fixed = fix_crc(crc, &corrupted[..4], &patched[..4], patched.len());
        assert_ne!(fixed, crc32c::crc32c(&patched));
    }
}
