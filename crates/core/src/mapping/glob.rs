//! Glob patterns over group names with captures: `*` matches any run of characters and
//! is captured, `?` matches one character. Matching ignores case. `pbx-queue-*` against
//! `PBX-Queue-101` captures `101`, which scope templates use as `{1}`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self { pattern: pattern.to_lowercase().chars().collect() }
    }

    /// The lower-cased literal text before the first wildcard: a subject that does not
    /// start with it cannot match.
    pub fn literal_prefix(&self) -> String {
        self.pattern.iter().take_while(|c| **c != '*' && **c != '?').collect()
    }

    /// The captures of each `*` when `text` matches.
    pub fn captures(&self, text: &str) -> Option<Vec<String>> {
        self.captures_in(&Subject::new(text))
    }

    /// As [`Glob::captures`], on a subject prepared once for many patterns.
    pub fn captures_in(&self, subject: &Subject) -> Option<Vec<String>> {
        // Cheap rejection on the literal prefix before any allocation.
        let prefix = self.pattern.iter().take_while(|c| **c != '*' && **c != '?').count();
        if subject.lower.len() < prefix || subject.lower[..prefix] != self.pattern[..prefix] {
            return None;
        }
        let mut spans = Vec::new();
        if self.match_from(0, &subject.lower, 0, &mut spans) {
            Some(spans.into_iter().map(|(a, b)| subject.original[a..b].iter().collect()).collect())
        } else {
            None
        }
    }

    /// Spans, not strings, while searching: nothing is allocated for a failed match.
    fn match_from(&self, p: usize, text: &[char], t: usize, spans: &mut Vec<(usize, usize)>) -> bool {
        if p == self.pattern.len() {
            return t == text.len();
        }
        match self.pattern[p] {
            '*' => {
                // Shortest capture first, so `a-*-*` splits left to right.
                for end in t..=text.len() {
                    spans.push((t, end));
                    if self.match_from(p + 1, text, end, spans) {
                        return true;
                    }
                    spans.pop();
                }
                false
            }
            '?' => t < text.len() && self.match_from(p + 1, text, t + 1, spans),
            c => t < text.len() && text[t] == c && self.match_from(p + 1, text, t + 1, spans),
        }
    }
}

/// A text prepared for matching: its characters, and lower-cased characters of the same
/// length (for the few scripts where lower-casing changes the length, the originals).
#[derive(Debug, Clone)]
pub struct Subject {
    pub lower: Vec<char>,
    pub original: Vec<char>,
    pub lower_text: String,
}

impl Subject {
    pub fn new(text: &str) -> Self {
        Self::with_lower(text, text.to_lowercase())
    }

    /// As [`Subject::new`] when the caller already lower-cased the text.
    pub fn with_lower(text: &str, lower_text: String) -> Self {
        let original: Vec<char> = text.chars().collect();
        let lower: Vec<char> = lower_text.chars().collect();
        let lower = if lower.len() == original.len() { lower } else { original.clone() };
        Self { lower, original, lower_text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_case() {
        assert_eq!(Glob::new("pbx-queue-*").captures("PBX-Queue-101"), Some(vec!["101".to_string()]));
        assert_eq!(Glob::new("*-admins").captures("sales-admins"), Some(vec!["sales".to_string()]));
        assert_eq!(Glob::new("site-*-queue-*").captures("site-ber-queue-7"), Some(vec!["ber".into(), "7".into()]));
        assert_eq!(Glob::new("exact").captures("EXACT"), Some(vec![]));
        assert!(Glob::new("pbx-?").captures("pbx-12").is_none());
        assert!(Glob::new("pbx-*").captures("crm-1").is_none());
    }
}
