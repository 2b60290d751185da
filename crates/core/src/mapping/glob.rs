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
        self.match_spans(&subject.lower)
            .map(|spans| spans.into_iter().map(|(a, b)| subject.original[a..b].iter().collect()).collect())
    }

    /// The classic two-pointer glob match, remembering only the last `*`: on a mismatch
    /// that star takes one more character and matching resumes after it. Returning to an
    /// earlier star is never needed — the text between two stars matched at its first
    /// occurrence, and the later star can absorb whatever an earlier one would have given
    /// up — so this finds the same captures as shortest-first backtracking (each `*` as
    /// short as the rest allows, left to right) in O(pattern × text) time, with no
    /// recursion (a group name of a million characters cannot overflow the stack).
    fn match_spans(&self, text: &[char]) -> Option<Vec<(usize, usize)>> {
        let pattern = &self.pattern;
        let mut spans: Vec<(usize, usize)> = Vec::new();
        // The last star: its pattern position and the index of its span.
        let mut last_star: Option<(usize, usize)> = None;
        let (mut p, mut t) = (0, 0);
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    spans.push((t, t));
                    last_star = Some((p, spans.len() - 1));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => {
                    let (star, span) = last_star?;
                    spans[span].1 += 1;
                    p = star + 1;
                    t = spans[span].1;
                }
            }
        }
        while pattern.get(p) == Some(&'*') {
            spans.push((t, t));
            p += 1;
        }
        (p == pattern.len()).then_some(spans)
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

    /// Several stars against a long name: this took 17 s with plain backtracking.
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

    /// A name of a million characters (a SCIM body can carry one) neither overflows the
    /// stack nor takes quadratic time.
    #[test]
    fn a_million_character_name_is_matched_without_recursion() {
        let name = format!("{}x", "-".repeat(1_000_000));
        let captures = Glob::new("*-*x").captures(&name).unwrap();
        assert_eq!(captures, vec![String::new(), "-".repeat(999_999)]);
        assert!(Glob::new("*-*-y").captures(&name).is_none());
    }
}
