//! Example plugin: Entra ID style mapping by a lookup table. Keys are Entra app-role
//! values (the user's `app_roles` attribute, comma-separated, as an Entra attribute
//! mapping delivers them) or group object ids; the first key that matches, in the order
//! the table lists them, gives role and access profile; scopes of every match add up.
//!
//! Config:
//! ```json
//! {"table": [{"key": "Portal.Admin", "role": "Customer admin", "access_profile": "Full portal"},
//!            {"key": "5b0f…-group-object-id", "role": "PBX admin", "queues": ["101"]}]}
//! ```

use std::collections::BTreeSet;

use idbridge_plugin_api::wire::{MapperOutput, MappingInput, Reason, Verdict};
use idbridge_plugin_api::{MappingPlugin, PluginError, export_plugin};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    access_profile: Option<String>,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    extensions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    table: Vec<Entry>,
}

pub struct EntraRoles {
    table: Vec<Entry>,
}

impl MappingPlugin for EntraRoles {
    fn create(config: serde_json::Value) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_value(config).map_err(|e| PluginError::config("table", e.to_string()))?;
        if let Some((i, _)) = config.table.iter().enumerate().find(|(_, e)| e.key.trim().is_empty()) {
            return Err(PluginError::config(format!("table[{i}].key"), "must not be empty"));
        }
        Ok(Self { table: config.table })
    }

    fn map(&self, input: MappingInput) -> Result<MapperOutput, PluginError> {
        let app_roles: BTreeSet<&str> = input
            .user
            .custom
            .get("app_roles")
            .map(|r| r.split(',').map(str::trim).filter(|r| !r.is_empty()).collect())
            .unwrap_or_default();
        let mut out = MapperOutput::abstain();
        for entry in &self.table {
            let group = input.groups.iter().find(|g| g.id == entry.key);
            if !app_roles.contains(entry.key.as_str()) && group.is_none() {
                continue;
            }
            let groups: Vec<String> = group.map(|g| vec![g.id.clone()]).unwrap_or_default();
            let reason = |grants: &str| Reason {
                mapper: String::new(),
                rule: Some(entry.key.clone()),
                grants: grants.into(),
                groups: groups.clone(),
            };
            out.verdict = Verdict::Grant;
            if out.role.is_none() && entry.role.is_some() {
                out.role.clone_from(&entry.role);
                out.reasons.push(reason("role"));
            }
            if out.access_profile.is_none() && entry.access_profile.is_some() {
                out.access_profile.clone_from(&entry.access_profile);
                out.reasons.push(reason("access_profile"));
            }
            for q in &entry.queues {
                out.scopes.queues.insert(q.clone());
                out.reasons.push(reason(&format!("scope:queues={q}")));
            }
            for x in &entry.extensions {
                out.scopes.extensions.insert(x.clone());
                out.reasons.push(reason(&format!("scope:extensions={x}")));
            }
        }
        Ok(out)
    }
}

export_plugin!(EntraRoles, "entra-roles", "1.0.0");
