//! Special tokens: which texts end a generation, and llama.cpp's cut of special-token
//! text out of a prompt before the plain text goes to BPE.

use std::ops::Range;

use super::{token_type, Tokenizer};

/// End-of-turn token texts, in llama.cpp's order of preference (`llama-vocab.cpp`): the
/// EOT token of a vocabulary whose metadata names none is the first of these it has.
pub(super) const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
/// Further texts that end a generation in llama.cpp (its `special_eog_ids`).
pub(super) const EOG_TEXTS: &[&str] = &["<|eom_id|>", "<|end_of_text|>", "<|return|>", "<|call|>"];

/// A piece of a prompt: a byte range of plain text, or a special token.
pub(super) enum Fragment {
    Text(usize, usize),
    Token(u32),
}

impl Tokenizer {
    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first,
    /// cut every occurrence out of the text fragments that remain. CONTROL and UNKNOWN
    /// occurrences that overlap a `plain` range stay text.
    pub(super) fn partition(
        &self,
        text: &str,
        parse_special: bool,
        plain: &[Range<usize>],
    ) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(0, text.len())];
        for (tok, id, ty) in &self.specials {
            if !parse_special && *ty != token_type::USER_DEFINED {
                continue;
            }
            if !text.contains(tok.as_str()) {
                continue;
            }
            let kept_as_text = |at: usize| {
                *ty != token_type::USER_DEFINED
                    && plain.iter().any(|r| at < r.end && r.start < at + tok.len())
            };
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let (mut a, b) = match f {
                    Fragment::Text(a, b) => (a, b),
                    token => {
                        next.push(token);
                        continue;
                    }
                };
                let mut from = a;
                while let Some(p) = text[from..b].find(tok.as_str()) {
                    let at = from + p;
                    if kept_as_text(at) {
                        // Search on after this occurrence's first character.
                        from = at + text[at..].chars().next().map_or(1, char::len_utf8);
                        continue;
                    }
                    if at > a {
                        next.push(Fragment::Text(a, at));
                    }
                    next.push(Fragment::Token(*id));
                    a = at + tok.len();
                    from = a;
                }
                if a < b {
                    next.push(Fragment::Text(a, b));
                }
            }
            frags = next;
        }
        frags
    }
}
