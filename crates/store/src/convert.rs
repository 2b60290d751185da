//! Conversions between stored column values and domain values.

use idbridge_core::DomainError;
use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn storage(e: sqlx::Error) -> DomainError {
    match e {
        // Every connection is busy: a moment's overload, said as such (503, try again).
        sqlx::Error::PoolTimedOut => DomainError::Unavailable(
            "every database connection is busy (database.max_connections); try again shortly".into(),
        ),
        e if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("57014") => DomainError::Unavailable(
            "a database statement ran past database.statement_timeout_seconds and was cancelled".into(),
        ),
        e => DomainError::Storage(e.to_string()),
    }
}

/// A unique-constraint violation becomes `AlreadyExists` naming the thing; anything
/// else is a storage error.
pub(crate) fn unique_or_storage<'k>(kind: &'static str, key: &'k str) -> impl FnOnce(sqlx::Error) -> DomainError + 'k {
    move |e| match e.as_database_error().map(|d| d.kind()) {
        Some(sqlx::error::ErrorKind::UniqueViolation) => DomainError::AlreadyExists { kind, key: key.to_owned() },
        _ => storage(e),
    }
}

pub(crate) fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

pub(crate) fn timestamp(micros: i64) -> Result<Timestamp, DomainError> {
    Timestamp::from_microsecond(micros).map_err(|e| DomainError::Storage(format!("stored instant {micros}: {e}")))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising plain domain structs into JSON cannot fail (no maps with non-string keys).
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

pub(crate) fn from_json<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, DomainError> {
    serde_json::from_str(text).map_err(|e| DomainError::Storage(format!("stored {column} is not valid: {e}")))
}

pub(crate) fn uuid(column: &str, text: &str) -> Result<uuid::Uuid, DomainError> {
    text.parse().map_err(|e| DomainError::Storage(format!("stored {column} {text:?}: {e}")))
}
