//! Finding the message contents in a rendered Jinja prompt: each content is rendered
//! again between two characters no message holds, and the marks' positions give its
//! range in the text.

use std::ops::Range;

use super::ChatMessage;

/// Two characters that no message holds, put around each message's content (inside its
/// leading and trailing whitespace, so that `trim` still trims) to find the contents in
/// the rendered text.
pub(super) struct ContentMarks {
    open: char,
    close: char,
}

pub(super) fn content_marks(messages: &[ChatMessage]) -> Option<ContentMarks> {
    // Private-use characters: no template has a reason to produce them.
    const FIRST: u32 = 0xE000;
    let mut used = vec![false; 0x1900];
    for c in messages
        .iter()
        .flat_map(|m| m.content.chars().chain(m.role.chars()))
    {
        if let Some(u) = (c as u32)
            .checked_sub(FIRST)
            .and_then(|i| used.get_mut(i as usize))
        {
            *u = true;
        }
    }
    let mut free = (0..used.len())
        .filter(|&i| !used[i])
        .filter_map(|i| char::from_u32(FIRST + i as u32));
    Some(ContentMarks {
        open: free.next()?,
        close: free.next()?,
    })
}

impl ContentMarks {
    pub(super) fn wrap(&self, content: &str) -> String {
        let core = content.trim();
        if core.is_empty() {
            return content.to_string();
        }
        let lead = &content[..content.len() - content.trim_start().len()];
        let trail = &content[content.trim_end().len()..];
        format!("{lead}{}{core}{}{trail}", self.open, self.close)
    }

    /// The text without the marks and the ranges they enclosed; `None` when the marks
    /// do not pair up (the template cut or reordered a content).
    pub(super) fn strip(&self, marked: &str) -> Option<(String, Vec<Range<usize>>)> {
        let mut text = String::with_capacity(marked.len());
        let mut ranges = Vec::new();
        let mut open_at = None;
        for c in marked.chars() {
            if c == self.open {
                if open_at.is_some() {
                    return None;
                }
                open_at = Some(text.len());
            } else if c == self.close {
                ranges.push(open_at.take()?..text.len());
            } else {
                text.push(c);
            }
        }
        open_at.is_none().then_some((text, ranges))
    }
}
