//! Decoding a stream of tokens into text that never splits a character.

use super::Tokenizer;

/// Streaming-safe decoder: push ids one at a time and get back only complete UTF-8.
/// A character split across tokens comes out once it is complete; invalid bytes become
/// U+FFFD. The concatenation of all pieces (plus [`flush`](Self::flush)) equals
/// [`Tokenizer::decode`] of all the ids with `skip_special = false`.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tok.token_bytes(id));
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix up to valid_up_to is valid UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[start..start + valid]).unwrap());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start += valid + bad;
                        }
                        None => {
                            // An incomplete character at the end: wait for more bytes.
                            start += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Whatever is still held back (an incomplete character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::byte_level::byte_to_char;
    use crate::tokenizer::tests::llama3;

    #[test]
    fn stream_decoder_holds_split_characters() {
        let tok = llama3();
        let text = "emoji 🚀🦙 and 日本語 café 😶\u{200d}🌫\u{fe0f}!";
        let ids = tok.encode(text, true, false).unwrap();
        // 🚀 (F0 9F 9A 80) is split over several byte tokens by Llama-3.
        let rocket = tok.encode("🚀", false, false).unwrap();
        assert!(rocket.len() > 1, "expected 🚀 to be split, got {rocket:?}");
        let mut dec = StreamDecoder::new();
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(dec.push(tok, id));
        }
        pieces.push(dec.flush());
        assert!(pieces.iter().any(|p| p.contains('🚀')), "{pieces:?}");
        for p in &pieces {
            assert!(
                !p.contains('\u{FFFD}'),
                "partial character emitted: {pieces:?}"
            );
        }
        // The piece in which 🚀 completes is preceded by empty pieces for its first bytes.
        let first_rocket_tok = ids
            .iter()
            .position(|&i| tok.token_bytes(i).starts_with(&[0xF0]))
            .unwrap();
        assert!(!pieces[first_rocket_tok].contains('🚀'));
        let joined: String = pieces.concat();
        assert_eq!(joined, tok.decode(&ids, false));
        assert_eq!(joined, format!("<|begin_of_text|>{text}"));
    }

    #[test]
    fn stream_decoder_invalid_bytes_match_lossy_decode() {
        let tok = llama3();
        // Byte tokens: lone continuation byte, an incomplete 3-byte lead followed by ASCII,
        // and a dangling lead byte at the end.
        let b = |byte: u8| {
            let c = byte_to_char()[byte as usize].to_string();
            tok.token_id(&c).unwrap()
        };
        let ids = vec![
            b(b'a'),
            b(0x80),
            b(0xE6),
            b(0x97),
            b(b'x'),
            b(0xE6),
            b(0x97),
            b(0xA5),
            b(0xF0),
        ];
        let mut dec = StreamDecoder::new();
        let mut s = String::new();
        for &id in &ids {
            s.push_str(&dec.push(tok, id));
        }
        s.push_str(&dec.flush());
        assert_eq!(s, tok.decode(&ids, false));
        assert_eq!(s, "a\u{FFFD}\u{FFFD}x日\u{FFFD}");
    }
}
