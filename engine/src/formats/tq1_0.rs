//! llama.cpp's TQ1_0: blocks of 256 values, `qs[48]` holding 5 trits per byte and
//! `qh[4]` holding 4 trits per byte, then an f16 `d`. A byte stores its trits as
//! a base-3 fixed-point fraction: trit n is read by multiplying the byte by 3ⁿ
//! (mod 256) and taking the carry of one more multiplication by 3.
//! Element order: bytes 0..32 give elements n·32+m (trit n of byte m), bytes
//! 32..48 give 160 + n·16 + m, and qh byte j gives 240 + n·4 + j.

use half::f16;

pub const BLOCK: usize = 256;
pub const BLOCK_BYTES: usize = 54;

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

fn trit(byte: u8, n: usize) -> u8 {
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as u8
}

/// The element index and trit position for each of the 256 values of a block:
/// `(byte index within the 52 code bytes, trit n)`.
fn layout() -> impl Iterator<Item = (usize, usize)> {
    let head = (0..5).flat_map(|n| (0..32).map(move |m| (m, n)));
    let mid = (0..5).flat_map(|n| (0..16).map(move |m| (32 + m, n)));
    let tail = (0..4).flat_map(|n| (0..4).map(move |j| (48 + j, n)));
    head.chain(mid).chain(tail)
}

pub fn dequantize(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    for blk in bytes[..n / BLOCK * BLOCK_BYTES].chunks_exact(BLOCK_BYTES) {
        let d = f16::from_le_bytes([blk[52], blk[53]]).to_f32();
        for (byte, t) in layout() {
            out.push((trit(blk[byte], t) as f32 - 1.0) * d);
        }
    }
    out
}

/// The codes (t+1 ∈ {0,1,2}) of one block, in element order.
pub fn block_codes(blk: &[u8], out: &mut [u8; BLOCK]) {
    for (o, (byte, t)) in out.iter_mut().zip(layout()) {
        *o = trit(blk[byte], t);
    }
}

/// Codes (t+1) in element order plus one scale per 256 values → TQ1_0 bytes.
pub fn quantize(codes: &[u8], block_scales: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(codes.len() / BLOCK * BLOCK_BYTES);
    for (blk, &d) in codes.chunks_exact(BLOCK).zip(block_scales) {
        let mut digits = [[0u8; 5]; 52];
        for ((byte, t), &c) in layout().zip(blk) {
            digits[byte][t] = c;
        }
        for d5 in digits {
            // Most significant trit first, then scaled to a fraction of 256, rounding up
            // so that the multiply-and-carry read recovers every digit.
            let q = d5.iter().fold(0u16, |q, &t| q * 3 + t as u16);
            out.push((q * 256).div_ceil(243) as u8);
        }
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_five_trit_byte_round_trips() {
        for q in 0..243u16 {
            let digits: Vec<u8> = (0..5)
                .rev()
                .map(|i| ((q / 3u16.pow(i)) % 3) as u8)
                .collect();
            let byte = (q * 256).div_ceil(243) as u8;
            for (n, &d) in digits.iter().enumerate() {
                assert_eq!(super::trit(byte, n), d, "q={q} n={n}");
            }
        }
    }
}
