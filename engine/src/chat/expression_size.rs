//! A bound on the operators in one template tag, checked before minijinja sees the
//! source. minijinja parses an operator chain (`1+1+…`, `not not …`, `a.b.c…`) in a
//! loop, outside its recursion limit, into a tree as deep as the chain, and then walks
//! that tree recursively: 4,000 of them in a 4 KB template overflow a 1 MiB stack, the
//! wasm builds' stack, and take the engine down with it. Real chat templates put a few
//! dozen operators in a tag.

/// The most operators (and calls and subscripts) one `{{ … }}` or `{% … %}` tag may hold.
pub const MAX_TAG_OPERATORS: usize = 300;

/// Where the first tag with more than [`MAX_TAG_OPERATORS`] operators starts (a 1-based
/// line), if any.
pub fn oversized_tag(src: &str) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'#' => i = find(src, i + 2, "#}").map_or(b.len(), |e| e + 2),
            b'{' | b'%' => {
                let close: &[u8] = if b[i + 1] == b'{' { b"}}" } else { b"%}" };
                let (end, ops, first_word) = scan_tag(b, i + 2, close);
                if ops > MAX_TAG_OPERATORS {
                    return Some(1 + b[..i].iter().filter(|&&c| c == b'\n').count());
                }
                // A raw block's body is text, not code.
                i = if close == b"%}" && first_word == Some(b"raw") {
                    find(src, end, "endraw").unwrap_or(b.len())
                } else {
                    end
                };
            }
            _ => i += 1,
        }
    }
    None
}

/// Scans one tag's body from `i`: where it ends (after `close`), its operator count and
/// its first word.
fn scan_tag<'a>(b: &'a [u8], mut i: usize, close: &[u8]) -> (usize, usize, Option<&'a [u8]>) {
    let mut ops = 0;
    let mut first_word = None;
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(close) {
            return (i + close.len(), ops, first_word);
        }
        match c {
            b'\'' | b'"' => {
                // A string literal: skip to its closing quote (backslash escapes).
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'~' | b'|' | b'.' | b'<' | b'>' | b'!' | b'='
            | b'(' | b'[' => {
                ops += 1;
                i += 1;
                // `**`, `//`, `==`, `<=`, … are one operator.
                while i < b.len() && b"*/=".contains(&b[i]) && !b[i..].starts_with(close) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let w = &b[start..i];
                if matches!(w, b"not" | b"and" | b"or" | b"in" | b"is" | b"if" | b"else") {
                    ops += 1;
                }
                first_word.get_or_insert(w);
            }
            _ => i += 1,
        }
    }
    (b.len(), ops, first_word)
}

/// Where `pat` next occurs in `src` from byte `from` on (`from` follows an ASCII tag
/// marker, so it is a character boundary).
fn find(src: &str, from: usize, pat: &str) -> Option<usize> {
    src.get(from..)?.find(pat).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_operators_per_tag_outside_strings() {
        let chain = |op: &str, n| format!("{{{{ 1{} }}}}", op.repeat(n));
        assert_eq!(oversized_tag(&chain("+1", MAX_TAG_OPERATORS)), None);
        assert_eq!(oversized_tag(&chain("+1", MAX_TAG_OPERATORS + 1)), Some(1));
        assert_eq!(oversized_tag(&chain("**1", MAX_TAG_OPERATORS + 1)), Some(1));
        let nots = format!("a\nb\n{{% if {}x %}}{{% endif %}}", "not ".repeat(400));
        assert_eq!(oversized_tag(&nots), Some(3));
        // Operators inside strings, comments, text and raw blocks do not count.
        let quoted = format!(
            "{{{{ '{}' ~ \"{}\" }}}}",
            "+".repeat(1000),
            "-".repeat(1000)
        );
        assert_eq!(oversized_tag(&quoted), None);
        let text = format!("{}{{# {} #}}", "+".repeat(1000), "+1".repeat(1000));
        assert_eq!(oversized_tag(&text), None);
        let raw = format!("{{% raw %}}{{{{ {} }}}}{{% endraw %}}", "+1".repeat(1000));
        assert_eq!(oversized_tag(&raw), None);
        // Many tags of a few operators each are fine.
        assert_eq!(oversized_tag(&"{{ a + b - c }}".repeat(1000)), None);
    }
}
