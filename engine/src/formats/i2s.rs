//! bitnet.cpp's I2_S (x86 layout, the layout of the official 2B4T file): 2-bit
//! codes 0/1/2 = −1/0/+1 in blocks of 128 values = 32 bytes, byte b of a block
//! holding elements b, 32+b, 64+b, 96+b in bits 7-6, 5-4, 3-2, 1-0. One f32 scale
//! for the whole tensor follows the codes at byte n/4; 28 unused bytes pad the
//! tensor to n/4 + 32 bytes. This is also the engine's kernel layout.

pub const BLOCK: usize = 128;
pub const BLOCK_BYTES: usize = 32;

/// The 2-bit code of element `i` of a 128-block.
#[inline]
pub fn code_at(block: &[u8], i: usize) -> u8 {
    let (group, b) = (i / 32, i % 32);
    (block[b] >> (6 - 2 * group)) & 3
}

pub fn scale(bytes: &[u8], n: usize) -> f32 {
    f32::from_le_bytes(bytes[n / 4..n / 4 + 4].try_into().unwrap())
}

pub fn dequantize(bytes: &[u8], n: usize) -> Vec<f32> {
    let s = scale(bytes, n);
    let mut out = Vec::with_capacity(n);
    for blk in bytes[..n / 4].chunks_exact(BLOCK_BYTES) {
        for i in 0..BLOCK {
            let c = code_at(blk, i);
            // Code 3 is unused by the quantizer; read it as 0 like bitnet.cpp's kernels do not.
            out.push(if c == 3 { 0.0 } else { (c as f32 - 1.0) * s });
        }
    }
    out
}

/// Packs codes (t+1, in element order) into I2_S blocks, without the scale slot.
pub fn pack_codes(codes: &[u8], out: &mut Vec<u8>) {
    for blk in codes.chunks_exact(BLOCK) {
        for b in 0..32 {
            out.push(
                (blk[b] & 3) << 6
                    | (blk[32 + b] & 3) << 4
                    | (blk[64 + b] & 3) << 2
                    | (blk[96 + b] & 3),
            );
        }
    }
}

/// Codes (t+1) plus the tensor's one scale → the bytes of an I2_S tensor.
pub fn quantize(codes: &[u8], scale: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(codes.len() / 4 + 32);
    pack_codes(codes, &mut out);
    out.extend_from_slice(&scale.to_le_bytes());
    out.resize(codes.len() / 4 + 32, 0);
    out
}
