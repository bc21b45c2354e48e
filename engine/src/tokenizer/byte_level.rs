//! GPT-2's byte-level mapping: every byte as a printable character, and back.

use std::sync::OnceLock;

/// GPT-2's byte → printable-unicode table (`bytes_to_unicode`).
pub(super) fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let cp = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            table[b as usize] = char::from_u32(cp).unwrap();
        }
        table
    })
}

/// The inverse table, indexed by code point (all mapped code points are < 324).
fn char_to_byte() -> &'static [i16; 324] {
    static TABLE: OnceLock<[i16; 324]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut inv = [-1i16; 324];
        for (b, &c) in byte_to_char().iter().enumerate() {
            inv[c as usize] = b as i16;
        }
        inv
    })
}

/// Appends the bytes a byte-level token string stands for. Characters outside the
/// GPT-2 table (not produced by byte-level BPE) are kept as their own UTF-8.
pub(super) fn push_byte_level_decoded(text: &str, out: &mut Vec<u8>) {
    let inv = char_to_byte();
    for c in text.chars() {
        match inv.get(c as usize) {
            Some(&b) if b >= 0 => out.push(b as u8),
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}
