//! What operators read, as the admin API sends it and `--json` prints it: wire types
//! built from domain types at the edge, so that a field added to a domain type (a hash,
//! an internal id) is never published by accident.

use serde::Serialize;

/// A tenant's SCIM token as listed: never its hash.
#[derive(Debug, Serialize)]
pub struct ScimToken {
    pub id: String,
    pub tenant_id: idbridge_core::tenant::TenantId,
    pub name: String,
    pub created_at: jiff::Timestamp,
    pub revoked_at: Option<jiff::Timestamp>,
}

impl From<idbridge_core::token::ScimTokenRecord> for ScimToken {
    fn from(record: idbridge_core::token::ScimTokenRecord) -> Self {
        // Exhaustive: a field added to the record is placed here or left out on purpose.
        let idbridge_core::token::ScimTokenRecord { id, tenant_id, name, hash: _, created_at, revoked_at } = record;
        Self { id, tenant_id, name, created_at, revoked_at }
    }
}

pub fn scim_tokens(records: Vec<idbridge_core::token::ScimTokenRecord>) -> Vec<ScimToken> {
    records.into_iter().map(ScimToken::from).collect()
}
