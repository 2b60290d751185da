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
        // With two or more `*`, plain backtracking is exponential (`*-*-*-*-*-*-x` against
        // a name of dashes): remembering which (pattern, text) positions already failed
        // makes it O(pattern × text). One `*` never needs it.
        let stars = self.pattern.iter().filter(|c| **c == '*').count();
        let mut failed =
            if stars > 1 { vec![false; (self.pattern.len() + 1) * (subject.lower.len() + 1)] } else { Vec::new() };
        if self.match_from(0, &subject.lower, 0, &mut spans, &mut failed) {
            Some(spans.into_iter().map(|(a, b)| subject.original[a..b].iter().collect()).collect())
        } else {
            None
        }
    }

    /// Spans, not strings, while searching: nothing is allocated for a failed match.
    /// `failed` (empty, or one flag per (pattern, text) position) remembers dead ends;
    /// which match is found first — shortest captures, left to right — is unchanged.
    fn match_from(
        &self,
        p: usize,
        text: &[char],
        t: usize,
        spans: &mut Vec<(usize, usize)>,
        failed: &mut [bool],
    ) -> bool {
        if p == self.pattern.len() {
            return t == text.len();
        }
        let cell = p * (text.len() + 1) + t;
        if failed.get(cell).copied().unwrap_or(false) {
            return false;
        }
        let matched = match self.pattern[p] {
            '*' => {
                // Shortest capture first, so `a-*-*` splits left to right.
                let mut found = false;
                for end in t..=text.len() {
                    spans.push((t, end));
                    if self.match_from(p + 1, text, end, spans, failed) {
                        found = true;
                        break;
                    }
                    spans.pop();
                }
                found
            }
            '?' => t < text.len() && self.match_from(p + 1, text, t + 1, spans, failed),
            c => t < text.len() && text[t] == c && self.match_from(p + 1, text, t + 1, spans, failed),
        };
        if !matched && let Some(flag) = failed.get_mut(cell) {
            *flag = true;
        }
        matched
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

    /// Backtracking over several stars stays polynomial: this took 17 s before.
    #[test]
    fn many_stars_against_a_long_name_answer_at_once() {
        let started = std::time::Instant::now();
        let name = "-".repeat(120);
        assert!(Glob::new("*-*-*-*-*-*-x").captures(&name).is_none());
        let name = format!("{}x", "-".repeat(5000));
        let captures = Glob::new("*-*-*-*-*-*-x").captures(&name).unwrap();
        assert_eq!(captures.len(), 6);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
