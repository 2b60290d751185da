//! What directory entries mean, as the servers return them: Active Directory's binary
//! `objectGUID`, `userAccountControl`, `accountExpires` (FILETIME), ranged `member`
//! values; OpenLDAP's and 389-ds's lock attributes; generalized time and `shadowExpire`.
//! Pure functions over ldap3's `SearchEntry`, so they are tested on entry shapes without
//! a server.

use std::collections::HashMap;

use jiff::Timestamp;
use ldap3::SearchEntry;

/// The values of an attribute, whichever map ldap3 put them in (it puts values that are
/// valid UTF-8 in `attrs`, others in `bin_attrs`), compared without regard to case.
pub fn values<'e>(entry: &'e SearchEntry, name: &str) -> Vec<&'e str> {
    lookup(&entry.attrs, name).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default()
}

pub fn first<'e>(entry: &'e SearchEntry, name: &str) -> Option<&'e str> {
    values(entry, name).into_iter().next().filter(|v| !v.is_empty())
}

fn lookup<'m, T>(map: &'m HashMap<String, Vec<T>>, name: &str) -> Option<&'m Vec<T>> {
    map.get(name).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The raw bytes of a binary attribute (`objectGUID`), from either map.
pub fn bytes(entry: &SearchEntry, name: &str) -> Option<Vec<u8>> {
    if let Some(v) = lookup(&entry.bin_attrs, name).and_then(|v| v.first()) {
        return Some(v.clone());
    }
    // 16 random bytes are sometimes valid UTF-8; ldap3 then hands them over as text.
    lookup(&entry.attrs, name).and_then(|v| v.first()).map(|s| s.as_bytes().to_vec())
}

/// `objectGUID` in its canonical string form: the first three fields are little-endian
/// (`{3F2504E0-4F89-11D3-9A0C-0305E82C3301}` is stored as `E0 04 25 3F 89 4F D3 11 …`).
pub fn guid_string(raw: &[u8]) -> Option<String> {
    let b: [u8; 16] = raw.try_into().ok()?;
    Some(
        uuid::Uuid::from_bytes([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
        ])
        .to_string(),
    )
}

/// `userAccountControl` with the ACCOUNTDISABLE bit (0x2).
pub fn ad_disabled(user_account_control: Option<&str>) -> bool {
    user_account_control.and_then(|v| v.trim().parse::<i64>().ok()).is_some_and(|v| v & 0x2 != 0)
}

/// What an expiry attribute says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    At(Timestamp),
    /// A value that cannot be read: reported, and treated as no expiry (never as "expired
    /// now", which would deprovision on garbage).
    Unreadable,
}

/// `accountExpires`: 100-nanosecond intervals since 1601-01-01 UTC; 0 and
/// 0x7FFFFFFFFFFFFFFF mean never.
pub fn filetime(value: &str) -> Expiry {
    let Ok(ticks) = value.trim().parse::<i64>() else { return Expiry::Unreadable };
    if ticks == 0 || ticks == i64::MAX {
        return Expiry::Never;
    }
    if ticks < 0 {
        return Expiry::Unreadable;
    }
    // Seconds between 1601-01-01 and 1970-01-01.
    const EPOCH_DIFFERENCE: i64 = 11_644_473_600;
    let seconds = ticks / 10_000_000 - EPOCH_DIFFERENCE;
    let nanos = (ticks % 10_000_000) * 100;
    match Timestamp::new(seconds, nanos as i32) {
        Ok(at) => Expiry::At(at),
        // Beyond what a timestamp can hold (year 9999+): as good as never.
        Err(_) => Expiry::Never,
    }
}

/// Generalized time (`20261231235959Z`, with optional fraction) or `shadowExpire` (days
/// since 1970; -1 and 99999 mean never).
pub fn generalized_or_days(value: &str) -> Expiry {
    let v = value.trim();
    if let Ok(days) = v.parse::<i64>() {
        if !(0..99_999).contains(&days) {
            return Expiry::Never;
        }
        return Timestamp::from_second(days * 86_400).map_or(Expiry::Unreadable, Expiry::At);
    }
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() < 12 || !v.ends_with('Z') {
        return Expiry::Unreadable;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &digits[0..4],
        &digits[4..6],
        &digits[6..8],
        &digits[8..10],
        &digits[10..12],
        digits.get(12..14).unwrap_or("00")
    );
    text.parse::<Timestamp>().map_or(Expiry::Unreadable, Expiry::At)
}

/// `member;range=0-1499` → the next range to ask for (`member;range=1500-*`), or `None`
/// when this was the last (`…-*`).
pub fn next_range(attribute: &str) -> Option<String> {
    let (name, range) = attribute.split_once(";range=")?;
    let (_, end) = range.split_once('-')?;
    if end == "*" {
        return None;
    }
    let end: u64 = end.parse().ok()?;
    Some(format!("{name};range={}-*", end + 1))
}

/// The attribute names of an entry that carry ranged values of `name`.
pub fn ranged<'e>(entry: &'e SearchEntry, name: &str) -> Vec<(&'e str, &'e Vec<String>)> {
    let prefix = format!("{};range=", name.to_ascii_lowercase());
    entry
        .attrs
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with(&prefix))
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &[&str])], bin: &[(&str, Vec<u8>)]) -> SearchEntry {
        SearchEntry {
            dn: "cn=x".into(),
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            bin_attrs: bin.iter().map(|(k, v)| (k.to_string(), vec![v.clone()])).collect(),
        }
    }

    #[test]
    fn object_guid_from_the_binary_or_the_text_map() {
        let raw = vec![0xE0, 0x04, 0x25, 0x3F, 0x89, 0x4F, 0xD3, 0x11, 0x9A, 0x0C, 0x03, 0x05, 0xE8, 0x2C, 0x33, 0x01];
        let e = entry(&[], &[("objectGUID", raw.clone())]);
        assert_eq!(guid_string(&bytes(&e, "objectguid").unwrap()).unwrap(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        // 16 bytes that happen to be valid UTF-8 arrive as text.
        let ascii = b"ABCDEFGHIJKLMNOP".to_vec();
        let e = entry(&[("objectGUID", &["ABCDEFGHIJKLMNOP"])], &[]);
        assert_eq!(bytes(&e, "objectGUID").unwrap(), ascii);
        assert_eq!(guid_string(&ascii).unwrap(), "44434241-4645-4847-494a-4b4c4d4e4f50");
        assert!(guid_string(&[1, 2, 3]).is_none());
    }

    #[test]
    fn user_account_control() {
        assert!(ad_disabled(Some("514")));
        assert!(!ad_disabled(Some("512")));
        assert!(ad_disabled(Some("66050")));
        assert!(!ad_disabled(Some("garbage")));
        assert!(!ad_disabled(None));
    }

    #[test]
    fn account_expires() {
        assert_eq!(filetime("0"), Expiry::Never);
        assert_eq!(filetime("9223372036854775807"), Expiry::Never);
        assert_eq!(filetime("133801632000000000"), Expiry::At("2025-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(filetime("9223372036854775806"), Expiry::Never, "after year 9999");
        assert_eq!(filetime("-5"), Expiry::Unreadable);
        assert_eq!(filetime("soon"), Expiry::Unreadable);
    }

    #[test]
    fn generalized_time_and_shadow_expire() {
        assert_eq!(generalized_or_days("20261231235959Z"), Expiry::At("2026-12-31T23:59:59Z".parse().unwrap()));
        assert_eq!(generalized_or_days("202612312359Z"), Expiry::At("2026-12-31T23:59:00Z".parse().unwrap()));
        assert_eq!(generalized_or_days("20500"), Expiry::At("2026-02-16T00:00:00Z".parse().unwrap()));
        assert_eq!(generalized_or_days("-1"), Expiry::Never);
        assert_eq!(generalized_or_days("99999"), Expiry::Never);
        assert_eq!(generalized_or_days("tomorrow"), Expiry::Unreadable);
    }

    #[test]
    fn ranged_member_values() {
        assert_eq!(next_range("member;range=0-1499").as_deref(), Some("member;range=1500-*"));
        assert_eq!(next_range("member;range=1500-*"), None);
        assert_eq!(next_range("member"), None);
        let e = entry(&[("member;range=0-1499", &["cn=a"]), ("cn", &["big"])], &[]);
        assert_eq!(ranged(&e, "member").len(), 1);
    }
}
