//! llama.cpp's TQ2_0: blocks of 256 values, `qs[64]` (2-bit codes) then an f16 `d`.
//! Within each 32-byte half, byte m holds elements m, m+32, m+64, m+96 of that
//! 128-value chunk in bits 0-1, 2-3, 4-5, 6-7; value = (code − 1)·d.

use half::f16;

pub const BLOCK: usize = 256;
pub const BLOCK_BYTES: usize = 66;

pub fn dequantize(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    for blk in bytes[..n / BLOCK * BLOCK_BYTES].chunks_exact(BLOCK_BYTES) {
        let d = f16::from_le_bytes([blk[64], blk[65]]).to_f32();
        for half in blk[..64].chunks_exact(32) {
            for l in 0..4 {
                for &byte in half {
                    out.push((((byte >> (2 * l)) & 3) as f32 - 1.0) * d);
                }
            }
        }
    }
    out
}

/// Codes (t+1) in element order plus one scale per 256 values → TQ2_0 bytes.
pub fn quantize(codes: &[u8], block_scales: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(codes.len() / BLOCK * BLOCK_BYTES);
    for (blk, &d) in codes.chunks_exact(BLOCK).zip(block_scales) {
        for chunk in blk.chunks_exact(128) {
            for m in 0..32 {
                let mut b = 0u8;
                for l in 0..4 {
                    b |= (chunk[l * 32 + m] & 3) << (2 * l);
                }
                out.push(b);
            }
        }
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    }
    out
}
