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

    /// The captures of each `*` when `text` matches.
    pub fn captures(&self, text: &str) -> Option<Vec<String>> {
        let lower: Vec<char> = text.to_lowercase().chars().collect();
        let original: Vec<char> = text.chars().collect();
        // Lower-casing can change lengths for a few scripts; fall back to exact chars then.
        let text_chars = if lower.len() == original.len() { &lower } else { &original };
        let mut captures = Vec::new();
        if self.match_from(0, text_chars, 0, &original, &mut captures) { Some(captures) } else { None }
    }

    fn match_from(&self, p: usize, text: &[char], t: usize, original: &[char], captures: &mut Vec<String>) -> bool {
        if p == self.pattern.len() {
            return t == text.len();
        }
        match self.pattern[p] {
            '*' => {
                // Shortest capture first, so `a-*-*` splits left to right.
                for end in t..=text.len() {
                    captures.push(original[t..end].iter().collect());
                    if self.match_from(p + 1, text, end, original, captures) {
                        return true;
                    }
                    captures.pop();
                }
                false
            }
            '?' => t < text.len() && self.match_from(p + 1, text, t + 1, original, captures),
            c => t < text.len() && text[t] == c && self.match_from(p + 1, text, t + 1, original, captures),
        }
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
