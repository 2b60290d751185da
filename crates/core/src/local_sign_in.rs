//! A tenant's policy for sign-in without an IdP, and the languages mails are written in.
//! Kept apart from `local_account` (the credentials, which name individuals and tenants)
//! so that the tenant's policy can hold it.

use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult};

/// Whether and how a tenant's people may sign in without an IdP (`[tenants.local_sign_in]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Stored in the tenant policy: read tolerantly, like it (strict input is `server::strict`).
#[serde(default)]
pub struct LocalSignInPolicy {
    /// Local sign-in allowed at all; when not, invitations are not sent either.
    pub allowed: bool,
    /// A second factor (TOTP) is required: enrolled right after the password is set, and
    /// asked for at every sign-in.
    pub second_factor: bool,
    /// How long an invitation link can be used.
    pub invitation_hours: u32,
    /// How long a password-reset link can be used.
    pub reset_minutes: u32,
    /// Days before the expiration the individual is told access ends (0: no notice).
    pub expiry_notice_days: u32,
    /// The mails' language when the individual has none (`en`, `de`).
    pub language: String,
}

impl Default for LocalSignInPolicy {
    fn default() -> Self {
        Self {
            allowed: false,
            second_factor: true,
            invitation_hours: 72,
            reset_minutes: 30,
            expiry_notice_days: 7,
            language: "en".into(),
        }
    }
}

impl LocalSignInPolicy {
    pub fn validate(&self) -> DomainResult<()> {
        if !(1..=24 * 30).contains(&self.invitation_hours) {
            return Err(DomainError::invalid("local_sign_in.invitation_hours", "must be between 1 and 720"));
        }
        if !(5..=24 * 60).contains(&self.reset_minutes) {
            return Err(DomainError::invalid("local_sign_in.reset_minutes", "must be between 5 and 1440"));
        }
        if self.expiry_notice_days > 365 {
            return Err(DomainError::invalid("local_sign_in.expiry_notice_days", "must be at most 365"));
        }
        if Language::parse(&self.language).is_none() {
            return Err(DomainError::invalid(
                "local_sign_in.language",
                format!("{:?} is not one of en, de", self.language),
            ));
        }
        Ok(())
    }
}

/// The languages mails and pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    De,
}

impl Language {
    /// `de`, `de-AT`, `DE_de` … → German; unknown → `None`.
    pub fn parse(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Self::En),
            "de" => Some(Self::De),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::De => "de",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_by_their_primary_tag() {
        assert_eq!(Language::parse("de-AT"), Some(Language::De));
        assert_eq!(Language::parse("EN_gb"), Some(Language::En));
        assert_eq!(Language::parse("fr"), None);
        assert_eq!(Language::parse(""), None);
    }

    #[test]
    fn a_policy_names_what_is_out_of_range() {
        let bad = LocalSignInPolicy { invitation_hours: 0, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("invitation_hours"));
        let bad = LocalSignInPolicy { language: "fr".into(), ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("fr"));
        LocalSignInPolicy::default().validate().unwrap();
    }
}
