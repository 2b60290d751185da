//! The closed set of things that can go wrong in the domain. Each protocol maps these
//! onto its own error format with an exhaustive `match`.

/// Everything a domain operation can fail with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// The caller sent something malformed; `field` names what, `reason` says why.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A named thing does not exist (in the caller's tenant).
    #[error("{kind} {key:?} not found")]
    NotFound { kind: &'static str, key: String },
    /// A unique name is already taken.
    #[error("{kind} {key:?} already exists")]
    AlreadyExists { kind: &'static str, key: String },
    /// Optimistic concurrency: somebody else changed the record first.
    #[error("{kind} {key:?} was changed concurrently (expected version {expected}, found {found})")]
    VersionConflict { kind: &'static str, key: String, expected: i64, found: i64 },
    /// The caller is known but may not do this (a delegated administrator handing out more
    /// than it holds); the text says which limit.
    #[error("{0}")]
    Forbidden(String),
    /// The operation is not allowed in the record's current state.
    #[error("{0}")]
    Rejected(String),
    /// The storage backend failed; the text is for logs, not for clients.
    #[error("storage error: {0}")]
    Storage(String),
    /// Something idbridge needs is not ready yet or is overloaded (signing keys still
    /// being generated, a worker queue full): the same request may succeed shortly.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// idbridge failed on its own side — a task that died, a key that cannot be used,
    /// randomness that failed — not the database and not the request; for logs.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    pub fn not_found(kind: &'static str, key: impl Into<String>) -> Self {
        Self::NotFound { kind, key: key.into() }
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
