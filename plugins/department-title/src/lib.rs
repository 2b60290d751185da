//! Example plugin: role and access profile from department and job title.
//!
//! Config:
//! ```json
//! {"rules": [{"department": "Finance", "title_contains": "manager", "role": "Operations manager",
//!             "access_profile": "Billing only"},
//!            {"department": "IT", "role": "PBX admin"}],
//!  "deny_titles": ["Contractor"]}
//! ```
//! Departments compare without regard to case; `title_contains` is a case-insensitive
//! substring; the first matching rule decides; a title in `deny_titles` denies.

use idbridge_plugin_api::wire::{MapperOutput, MappingInput, Reason, Verdict};
use idbridge_plugin_api::{MappingPlugin, PluginError, export_plugin};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    department: String,
    #[serde(default)]
    title_contains: Option<String>,
    role: String,
    #[serde(default)]
    access_profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    rules: Vec<Rule>,
    #[serde(default)]
    deny_titles: Vec<String>,
}

pub struct DepartmentTitle {
    config: Config,
}

impl MappingPlugin for DepartmentTitle {
    fn create(config: serde_json::Value) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_value(config).map_err(|e| PluginError::config("rules", e.to_string()))?;
        for (i, rule) in config.rules.iter().enumerate() {
            if rule.role.trim().is_empty() {
                return Err(PluginError::config(format!("rules[{i}].role"), "must not be empty"));
            }
        }
        Ok(Self { config })
    }

    fn map(&self, input: MappingInput) -> Result<MapperOutput, PluginError> {
        let title = input.user.title.as_deref().unwrap_or("").to_lowercase();
        if self.config.deny_titles.iter().any(|t| t.to_lowercase() == title) {
            let mut out = MapperOutput::abstain();
            out.verdict = Verdict::Deny;
            out.reasons.push(Reason {
                mapper: String::new(),
                rule: Some(format!("deny_titles:{title}")),
                grants: "deny".into(),
                groups: vec![],
            });
            return Ok(out);
        }
        let Some(department) = input.user.department.as_deref() else { return Ok(MapperOutput::abstain()) };
        for (i, rule) in self.config.rules.iter().enumerate() {
            let title_ok = rule.title_contains.as_ref().is_none_or(|t| title.contains(&t.to_lowercase()));
            if rule.department.eq_ignore_ascii_case(department) && title_ok {
                let mut out = MapperOutput::abstain();
                out.verdict = Verdict::Grant;
                out.role = Some(rule.role.clone());
                out.access_profile.clone_from(&rule.access_profile);
                let name = format!("rules[{i}]");
                out.reasons.push(Reason {
                    mapper: String::new(),
                    rule: Some(name.clone()),
                    grants: "role".into(),
                    groups: vec![],
                });
                if rule.access_profile.is_some() {
                    out.reasons.push(Reason {
                        mapper: String::new(),
                        rule: Some(name),
                        grants: "access_profile".into(),
                        groups: vec![],
                    });
                }
                return Ok(out);
            }
        }
        Ok(MapperOutput::abstain())
    }
}

export_plugin!(DepartmentTitle, "department-title", "1.0.0");
