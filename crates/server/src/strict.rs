//! Input is strict, stored data tolerant. Domain types that are also stored (a tenant's
//! policy, its directory and IdP connections, mapping rules) accept unknown fields, so
//! that what a newer version wrote never makes an older one fail (after a rollback, or
//! with an instance one version behind). What an operator or a client *sends* is held
//! to the schema here: every field the target type does not know is named in the error
//! — a typo (`defualt`, `mass_deprovison_percent`) must not be silently dropped.

use serde::de::DeserializeOwned;

/// Why a document was refused: its syntax or a value (as the parser says), or fields
/// nobody reads.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Data(String),
    #[error("unknown field{} {}", if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "))]
    Unknown(Vec<String>),
}

impl StrictError {
    /// A syntax error is a malformed document; the others a well-formed one the schema
    /// refuses (400 vs 422 at the HTTP edge).
    pub fn is_syntax(&self) -> bool {
        matches!(self, Self::Syntax(_))
    }
}

fn refuse_unknown<T>(value: T, unknown: Vec<String>) -> Result<T, StrictError> {
    if unknown.is_empty() { Ok(value) } else { Err(StrictError::Unknown(unknown)) }
}

/// Tells a JSON `null` (clear) from an absent field (keep): use with
/// `#[serde(default, deserialize_with = "crate::strict::present")]` on an
/// `Option<Option<String>>`.
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Some)
}

/// TOML, every field known.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, StrictError> {
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(toml::Deserializer::new(text), |path| unknown.push(path.to_string()))
        .map_err(|e: toml::de::Error| StrictError::Data(e.to_string().trim().replace('\n', " ")))?;
    refuse_unknown(value, unknown)
}

/// JSON, every field known.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictError> {
    let mut unknown = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_ignored::deserialize(&mut deserializer, |path| unknown.push(path.to_string()))
        .and_then(|v| deserializer.end().map(|()| v))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => StrictError::Data(e.to_string()),
            _ => StrictError::Syntax(e.to_string()),
        })?;
    refuse_unknown(value, unknown)
}

#[cfg(test)]
mod tests {
    use idbridge_core::tenant::TenantPolicy;

    use super::*;

    #[test]
    fn stored_policy_is_tolerant_and_input_is_strict() {
        let newer = r#"{"retention_days": 30, "from_a_newer_version": true, "oidc": []}"#;
        let stored: TenantPolicy = serde_json::from_str(newer).unwrap();
        assert_eq!(stored.retention_days, 30);
        let refused = from_json::<TenantPolicy>(newer.as_bytes()).unwrap_err();
        assert_eq!(refused.to_string(), "unknown field `from_a_newer_version`");
        let refused = from_toml::<TenantPolicy>(
            "retention_days = 3\n[[oidc]]\nname = \"x\"\nissuer = \"https://i\"\nclient_id = \"c\"\nclaim_paths = 1\n",
        );
        assert!(refused.unwrap_err().to_string().contains("oidc.0.claim_paths"));
        assert!(from_json::<TenantPolicy>(b"{").unwrap_err().is_syntax());
        assert!(!from_json::<TenantPolicy>(br#"{"retention_days": "x"}"#).unwrap_err().is_syntax());
    }
}
