//! Stop strings over a reply that grows a token at a time: where the first one starts,
//! and how much of the text's end to hold back from the stream because it could still
//! become one (a stop string is never streamed, not even in part).

pub(super) struct StopStrings {
    stops: Vec<String>,
    longest: usize,
}

impl StopStrings {
    pub(super) fn new(stops: &[String]) -> StopStrings {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopStrings { stops, longest }
    }

    /// `text` after a token was appended, of which `emitted` bytes are streamed: the end
    /// of what may be streamed now, and whether a stop string starts there (the text is
    /// then cut at that point). Only the new end is searched: a match must reach past
    /// `emitted`, since held-back bytes are all that can begin one.
    pub(super) fn scan(&self, text: &str, emitted: usize) -> (usize, bool) {
        let from = floor_char_boundary(text, emitted.saturating_sub(self.longest));
        let hit = self
            .stops
            .iter()
            .filter_map(|s| text[from..].find(s.as_str()).map(|p| from + p))
            .min();
        match hit {
            Some(p) => (p, true),
            None => (text.len() - self.held_back(text), false),
        }
    }

    /// Bytes at the end of `text` that are a proper prefix of some stop string.
    fn held_back(&self, text: &str) -> usize {
        self.stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .rev()
                    .filter(move |&k| s.is_char_boundary(k))
                    .map(move |k| &s[..k])
            })
            .filter(|p| text.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> StopStrings {
        StopStrings::new(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn holds_back_a_tail_that_could_become_a_stop_string() {
        let s = stops(&["\nUser:"]);
        assert_eq!(s.scan("Hello", 0), (5, false));
        assert_eq!(s.scan("Hello\nUs", 5), (5, false));
        assert_eq!(s.scan("Hello\nUse it", 5), (12, false));
        assert_eq!(s.scan("Hello\nUser: hi", 5), (5, true));
    }

    #[test]
    fn the_earliest_match_wins_and_empty_strings_never_match() {
        let s = stops(&["", "cd", "bc"]);
        assert_eq!(s.scan("abcd", 0), (1, true));
        assert_eq!(stops(&[""]).scan("abc", 0), (3, false));
    }

    #[test]
    fn multibyte_prefixes_cut_on_character_boundaries() {
        let s = stops(&["é!"]);
        // "é" is two bytes: all of it is held back, never half of it.
        assert_eq!(s.scan("café", 0), (3, false));
        assert_eq!(s.scan("café!", 3), (3, true));
        // A scan window that starts inside a character starts at its boundary.
        assert_eq!(stops(&["x"]).scan("ééx", 3), (4, true));
    }
}
