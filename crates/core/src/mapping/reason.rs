//! Why a decision grants what it grants: kept with each individual (its provenance) and
//! shown by `individual explain`. A leaf: the individual refers to it without depending on
//! the mapping pipeline.

use serde::{Deserialize, Serialize};

/// Why a part of a decision is what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reason {
    /// The mapper (`rules`, or a plugin id).
    pub mapper: String,
    /// The rule within the mapper, when it has rules.
    pub rule: Option<String>,
    /// What this reason justifies: `role`, `access_profile`, `deny`, `scope:queues=101`.
    pub grants: String,
    /// The external groups (ids) that caused it.
    pub groups: Vec<String>,
}
