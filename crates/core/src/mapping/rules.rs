//! The built-in rules mapper: operator rules that match on group names or ids (exact,
//! case-insensitive or glob), on user attributes, and on a CEL expression, and grant a
//! role, an access profile and scope templates — or deny.
//!
//! Rules are tried by priority (highest first, then name). The first matching rule that
//! denies, or that names a role, decides; the first matching rule naming an access profile
//! gives it; scopes are the union over every matching granting rule, one per matching
//! group, so membership of `pbx-queue-101` and `pbx-queue-102` gives both queues.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::glob::{Glob, Subject};
use super::{ExternalGroup, MapperError, MapperOutput, MappingInput, Reason, Verdict};
use crate::scopes::{GroupReach, Scopes};
use crate::{DomainError, DomainResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    #[default]
    Grant,
    Deny,
}

/// Scope values, each a template: `{1}`, `{2}` … are the `*` captures of the group
/// pattern that matched, `{group}` the group's display name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScopeTemplates {
    pub full_call_reports: bool,
    pub extensions: Vec<String>,
    pub queues: Vec<String>,
    pub phone_numbers: Vec<String>,
    pub billing_accounts: Vec<String>,
    pub default_caller_id: Option<String>,
    /// Portal groups the person becomes a member of (`groups = ["{1}"]` for `pbx-team-*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Group-scoped right → the groups it reaches; `"*"` is every group
    /// (`group_rights.co_monitoring = ["{1}"]`, `group_rights.statistics = ["*"]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_rights: BTreeMap<String, Vec<String>>,
}

impl ScopeTemplates {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One rule as operators write it (`[[tenants.rules]]` in an apply file). Stored as JSON
/// and read tolerantly; unknown fields are refused at the edges (`server::strict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub effect: Effect,
    /// Any of these matches: `Name` (any case), `exact:Name`, `id:<immutable id>`, or a
    /// glob with `*` / `?`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Every one of these must match: attribute name → glob (`department = "Sales*"`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// A CEL expression over `user` and `groups` that must be true.
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub access_profile: Option<String>,
    #[serde(default)]
    pub scopes: ScopeTemplates,
}

enum GroupPattern {
    Id(String),
    Exact(String),
    Name(String),
    Glob(Glob),
}

impl GroupPattern {
    fn parse(raw: &str) -> Self {
        if let Some(id) = raw.strip_prefix("id:") {
            Self::Id(id.to_owned())
        } else if let Some(name) = raw.strip_prefix("exact:") {
            Self::Exact(name.to_owned())
        } else if raw.contains(['*', '?']) {
            Self::Glob(Glob::new(raw))
        } else {
            Self::Name(raw.to_lowercase())
        }
    }
}

/// A group a rule matched, with the captures of its pattern.
type GroupMatch<'i> = (&'i ExternalGroup, Vec<String>);

struct CompiledRule {
    rule: Rule,
    groups: Vec<GroupPattern>,
    attributes: Vec<(String, Glob)>,
    expression: Option<cel::Program>,
}

/// A tenant's rules, compiled once, with their group patterns indexed so that a person's
/// groups are looked up rather than tried against every pattern of every rule.
pub struct RulesMapper {
    rules: Vec<CompiledRule>,
    index: PatternIndex,
}

/// Where each group pattern lives: (rule position in priority order, pattern position in
/// the rule).
#[derive(Default)]
struct PatternIndex {
    by_id: HashMap<String, Vec<(usize, usize)>>,
    by_exact: HashMap<String, Vec<(usize, usize)>>,
    by_name: HashMap<String, Vec<(usize, usize)>>,
    /// Globs with their literal prefixes, checked on the lower-cased name first.
    globs: Vec<(usize, usize, String, Glob)>,
}

impl PatternIndex {
    fn new(rules: &[CompiledRule]) -> Self {
        let mut index = Self::default();
        for (r, rule) in rules.iter().enumerate() {
            for (p, pattern) in rule.groups.iter().enumerate() {
                match pattern {
                    GroupPattern::Id(id) => index.by_id.entry(id.clone()).or_default().push((r, p)),
                    GroupPattern::Exact(name) => index.by_exact.entry(name.clone()).or_default().push((r, p)),
                    GroupPattern::Name(lower) => index.by_name.entry(lower.clone()).or_default().push((r, p)),
                    GroupPattern::Glob(glob) => index.globs.push((r, p, glob.literal_prefix(), glob.clone())),
                }
            }
        }
        index
    }

    /// Every (rule, group) pair that matches, with the captures of the rule's first
    /// matching pattern, sorted by rule (priority order) and group.
    fn hits(&self, groups: &[ExternalGroup]) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let plain = |found: Option<&Vec<(usize, usize)>>, hits: &mut Vec<Hit>| {
                for (r, p) in found.into_iter().flatten() {
                    hits.push(Hit { rule: *r, group: g, pattern: *p, captures: Vec::new() });
                }
            };
            plain(self.by_id.get(&group.id), &mut hits);
            plain(self.by_exact.get(&group.display_name), &mut hits);
            // Most names are lower-case ASCII already: no allocation for them.
            let name = group.display_name.as_str();
            let lower: std::borrow::Cow<'_, str> = if name.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
                name.to_lowercase().into()
            } else {
                name.into()
            };
            plain(self.by_name.get(lower.as_ref()), &mut hits);
            let mut subject: Option<Subject> = None;
            for (r, p, prefix, glob) in &self.globs {
                if !lower.starts_with(prefix.as_str()) {
                    continue;
                }
                let subject =
                    subject.get_or_insert_with(|| Subject::with_lower(&group.display_name, lower.clone().into_owned()));
                if let Some(captures) = glob.captures_in(subject) {
                    hits.push(Hit { rule: *r, group: g, pattern: *p, captures });
                }
            }
        }
        hits.sort_unstable_by_key(|h| (h.rule, h.group, h.pattern));
        hits.dedup_by_key(|h| (h.rule, h.group));
        hits
    }
}

struct Hit {
    rule: usize,
    group: usize,
    pattern: usize,
    captures: Vec<String>,
}

impl std::fmt::Debug for RulesMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesMapper").field("rules", &self.rules.len()).finish()
    }
}

/// Checks a rule set on its own (names, patterns, templates, expressions).
pub fn validate_rules(rules: &[Rule]) -> DomainResult<()> {
    let mut names = BTreeSet::new();
    for rule in rules {
        if rule.name.trim().is_empty() || rule.name.len() > 128 {
            return Err(DomainError::invalid("rule name", "must be 1-128 characters"));
        }
        if !names.insert(rule.name.as_str()) {
            return Err(DomainError::invalid("rules", format!("rule {:?} is listed twice", rule.name)));
        }
        if rule.effect == Effect::Grant
            && rule.role.is_none()
            && rule.access_profile.is_none()
            && rule.scopes.is_empty()
        {
            return Err(DomainError::invalid(
                "rules",
                format!("rule {:?} grants nothing: give it a role, an access profile or scopes", rule.name),
            ));
        }
        if rule.effect == Effect::Deny
            && (rule.role.is_some() || rule.access_profile.is_some() || !rule.scopes.is_empty())
        {
            return Err(DomainError::invalid("rules", format!("deny rule {:?} cannot also grant", rule.name)));
        }
        for (right, templates) in &rule.scopes.group_rights {
            crate::catalog::validate_identifier("group right", right)
                .map_err(|e| DomainError::invalid("rules", format!("rule {:?}: {e}", rule.name)))?;
            if templates.is_empty() {
                return Err(DomainError::invalid(
                    "rules",
                    format!("rule {:?}: group right {right:?} names no group (use [\"*\"] for every group)", rule.name),
                ));
            }
        }
        if rule.groups.iter().any(|g| g.trim().is_empty() || g == "id:" || g == "exact:") {
            return Err(DomainError::invalid("rules", format!("rule {:?} has an empty group pattern", rule.name)));
        }
        let captures = rule
            .groups
            .iter()
            .map(|g| if g.starts_with("id:") || g.starts_with("exact:") { 0 } else { g.matches('*').count() })
            .max()
            .unwrap_or(0);
        for template in rule_templates(&rule.scopes) {
            for n in placeholders(template) {
                match n {
                    Placeholder::Capture(n) if n == 0 || n > captures => {
                        return Err(DomainError::invalid(
                            "rules",
                            format!(
                                "rule {:?}: template {template:?} uses {{{n}}} but its group patterns capture {captures} value(s)",
                                rule.name
                            ),
                        ));
                    }
                    Placeholder::Group if rule.groups.is_empty() => {
                        return Err(DomainError::invalid(
                            "rules",
                            format!(
                                "rule {:?}: template {template:?} uses {{group}} but the rule matches no groups",
                                rule.name
                            ),
                        ));
                    }
                    Placeholder::Unknown(p) => {
                        return Err(DomainError::invalid(
                            "rules",
                            format!("rule {:?}: unknown placeholder {{{p}}} in {template:?}", rule.name),
                        ));
                    }
                    _ => {}
                }
            }
        }
        if let Some(expression) = &rule.expression {
            cel::Program::compile(expression).map_err(|e| {
                DomainError::invalid("rules", format!("rule {:?}: expression does not compile: {e}", rule.name))
            })?;
        }
    }
    Ok(())
}

fn rule_templates(t: &ScopeTemplates) -> impl Iterator<Item = &String> {
    t.extensions
        .iter()
        .chain(&t.queues)
        .chain(&t.phone_numbers)
        .chain(&t.billing_accounts)
        .chain(t.default_caller_id.iter())
        .chain(&t.groups)
        .chain(t.group_rights.values().flatten())
}

enum Placeholder {
    Capture(usize),
    Group,
    Unknown(String),
}

fn placeholders(template: &str) -> Vec<Placeholder> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        let name = &rest[open + 1..open + close];
        out.push(match name {
            "group" => Placeholder::Group,
            n => n.parse().map_or_else(|_| Placeholder::Unknown(n.to_owned()), Placeholder::Capture),
        });
        rest = &rest[open + close + 1..];
    }
    out
}

fn fill(template: &str, group: Option<(&ExternalGroup, &[String])>) -> String {
    let mut out = template.to_owned();
    if let Some((group, captures)) = group {
        out = out.replace("{group}", &group.display_name);
        for (i, c) in captures.iter().enumerate() {
            out = out.replace(&format!("{{{}}}", i + 1), c);
        }
    }
    out
}

fn attribute<'a>(input: &'a MappingInput, name: &str) -> Option<&'a str> {
    let u = &input.user;
    match name {
        "login" => Some(u.login.as_str()),
        "email" => u.emails.first().map(String::as_str),
        "given_name" => u.given_name.as_deref(),
        "family_name" => u.family_name.as_deref(),
        "display_name" => u.display_name.as_deref(),
        "title" => u.title.as_deref(),
        "department" => u.department.as_deref(),
        "employee_number" => u.employee_number.as_deref(),
        "manager" => u.manager.as_deref(),
        other => u.custom.get(other).map(String::as_str),
    }
}

impl RulesMapper {
    pub fn new(rules: &[Rule]) -> DomainResult<Self> {
        validate_rules(rules)?;
        let mut compiled: Vec<CompiledRule> = rules
            .iter()
            .map(|rule| {
                Ok(CompiledRule {
                    groups: rule.groups.iter().map(|g| GroupPattern::parse(g)).collect(),
                    attributes: rule.attributes.iter().map(|(k, v)| (k.clone(), Glob::new(v))).collect(),
                    expression: rule
                        .expression
                        .as_deref()
                        .map(cel::Program::compile)
                        .transpose()
                        .map_err(|e| DomainError::invalid("rules", e.to_string()))?,
                    rule: rule.clone(),
                })
            })
            .collect::<DomainResult<_>>()?;
        compiled.sort_by(|a, b| b.rule.priority.cmp(&a.rule.priority).then_with(|| a.rule.name.cmp(&b.rule.name)));
        let index = PatternIndex::new(&compiled);
        Ok(Self { rules: compiled, index })
    }

    /// The groups (with captures) a rule matches, or `None` when the rule does not apply.
    /// A rule without group patterns matches with no group. `hits` are the rule's group
    /// matches from the index.
    fn matches<'i>(
        &self,
        rule: &CompiledRule,
        input: &'i MappingInput,
        hits: &mut [Hit],
        attributes: &mut Vec<(String, Subject)>,
        cel_context: &mut Option<cel::Context<'static>>,
    ) -> Result<Option<Vec<GroupMatch<'i>>>, MapperError> {
        if !rule.groups.is_empty() && hits.is_empty() {
            return Ok(None);
        }
        for (name, glob) in &rule.attributes {
            let Some(value) = attribute(input, name) else { return Ok(None) };
            // Each attribute is prepared once per person, however many rules test it.
            let subject = match attributes.iter().position(|(n, _)| n == name) {
                Some(i) => &attributes[i].1,
                None => {
                    attributes.push((name.clone(), Subject::new(value)));
                    &attributes[attributes.len() - 1].1
                }
            };
            if glob.captures_in(subject).is_none() {
                return Ok(None);
            }
        }
        let matched: Vec<GroupMatch<'i>> =
            hits.iter_mut().map(|h| (&input.groups[h.group], std::mem::take(&mut h.captures))).collect();
        if let Some(program) = &rule.expression {
            let context = cel_context.get_or_insert_with(|| expression_context(input));
            let value = program.execute(context).map_err(|e| MapperError {
                mapper: "rules".into(),
                message: format!("rule {:?}: expression failed: {e}", rule.rule.name),
            })?;
            if value != cel::Value::Bool(true) {
                return Ok(None);
            }
        }
        Ok(Some(matched))
    }
}

/// CEL sees `user` (the attributes, `custom` flattened in) and `groups` (display names)
/// and `group_ids`.
fn expression_context(input: &MappingInput) -> cel::Context<'static> {
    let mut context = cel::Context::default();
    let mut user: BTreeMap<String, String> = input.user.custom.clone();
    for key in [
        "login",
        "email",
        "given_name",
        "family_name",
        "display_name",
        "title",
        "department",
        "employee_number",
        "manager",
    ] {
        if let Some(v) = attribute(input, key) {
            user.insert(key.to_owned(), v.to_owned());
        }
    }
    let _ = context.add_variable("user", user);
    let _ = context.add_variable("groups", input.groups.iter().map(|g| g.display_name.clone()).collect::<Vec<_>>());
    let _ = context.add_variable("group_ids", input.groups.iter().map(|g| g.id.clone()).collect::<Vec<_>>());
    context
}

impl super::Mapper for RulesMapper {
    fn id(&self) -> &str {
        "rules"
    }

    fn map(&self, input: &MappingInput) -> Result<MapperOutput, MapperError> {
        let mut output = MapperOutput::abstain();
        let mut cel_context = None;
        let mut role_decided = false;
        let mut hits = self.index.hits(&input.groups);
        let mut attributes = Vec::new();
        let mut next = 0;
        for (position, compiled) in self.rules.iter().enumerate() {
            let start = next;
            while next < hits.len() && hits[next].rule == position {
                next += 1;
            }
            let Some(matched) =
                self.matches(compiled, input, &mut hits[start..next], &mut attributes, &mut cel_context)?
            else {
                continue;
            };
            let rule = &compiled.rule;
            let group_ids: Vec<String> = matched.iter().map(|(g, _)| g.id.clone()).collect();
            let reason = |grants: String| Reason {
                mapper: "rules".into(),
                rule: Some(rule.name.clone()),
                grants,
                groups: group_ids.clone(),
            };
            if rule.effect == Effect::Deny {
                if role_decided {
                    continue;
                }
                return Ok(MapperOutput {
                    verdict: Verdict::Deny,
                    reasons: vec![reason("deny".into())],
                    ..MapperOutput::abstain()
                });
            }
            output.verdict = Verdict::Grant;
            if let (Some(role), false) = (&rule.role, role_decided) {
                role_decided = true;
                output.role = Some(role.clone());
                output.reasons.push(reason("role".into()));
            }
            if let (Some(profile), None) = (&rule.access_profile, &output.access_profile) {
                output.access_profile = Some(profile.clone());
                output.reasons.push(reason("access_profile".into()));
            }
            if rule.scopes.is_empty() {
                continue;
            }
            // Templates are filled once per matching group (or once without a group).
            let contexts: Vec<Option<(&ExternalGroup, &[String])>> = if matched.is_empty() {
                vec![None]
            } else {
                matched.iter().map(|(g, c)| Some((*g, c.as_slice()))).collect()
            };
            for ctx in contexts {
                let t = &rule.scopes;
                let mut scopes = Scopes { full_call_reports: t.full_call_reports, ..Scopes::default() };
                scopes.extensions = t.extensions.iter().map(|v| fill(v, ctx)).collect();
                scopes.queues = t.queues.iter().map(|v| fill(v, ctx)).collect();
                scopes.phone_numbers = t.phone_numbers.iter().map(|v| fill(v, ctx)).collect();
                scopes.billing_accounts = t.billing_accounts.iter().map(|v| fill(v, ctx)).collect();
                scopes.default_caller_id = t.default_caller_id.as_ref().map(|v| fill(v, ctx));
                scopes.groups = t.groups.iter().map(|v| fill(v, ctx)).collect();
                for (right, templates) in &t.group_rights {
                    let reach = GroupReach::listed(templates.iter().map(|v| fill(v, ctx)));
                    scopes.group_rights.insert(right.clone(), reach);
                }
                let group = ctx.map(|(g, _)| vec![g.id.clone()]).unwrap_or_default();
                for entry in scopes.entries() {
                    output.reasons.push(Reason {
                        mapper: "rules".into(),
                        rule: Some(rule.name.clone()),
                        grants: format!("scope:{entry}"),
                        groups: group.clone(),
                    });
                }
                output.scopes.union(&scopes);
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::individual::SourceKind;
    use crate::mapping::{Mapper, Pipeline, UserFacts};

    fn group(name: &str) -> ExternalGroup {
        ExternalGroup { source: SourceKind::Scim, id: format!("id-{name}"), display_name: name.into(), via: vec![] }
    }

    fn input(groups: &[&str], department: Option<&str>) -> MappingInput {
        MappingInput {
            tenant: "acme".into(),
            user: UserFacts { login: "bob".into(), department: department.map(str::to_owned), ..Default::default() },
            groups: groups.iter().map(|g| group(g)).collect(),
            current: None,
        }
    }

    fn rules(text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct Doc {
            rules: Vec<Rule>,
        }
        serde_json::from_str::<Doc>(text).unwrap().rules
    }

    fn mapper() -> RulesMapper {
        RulesMapper::new(&rules(r#"{"rules": [
            {"name": "admins", "priority": 100, "groups": ["Portal-Admins"], "role": "Customer admin", "access_profile": "Full portal", "scopes": {"full_call_reports": true}},
            {"name": "leavers", "priority": 90, "effect": "deny", "groups": ["leavers"]},
            {"name": "pbx", "priority": 50, "groups": ["pbx-admins", "id:0a1b"], "role": "PBX admin"},
            {"name": "queues", "groups": ["pbx-queue-*"], "scopes": {"queues": ["{1}"]}},
            {"name": "finance", "priority": 10, "attributes": {"department": "Fin*"}, "role": "Operations manager", "access_profile": "Billing only"},
            {"name": "vip", "groups": ["vip"], "expression": "'vip' in groups && user.login == 'bob' && size(group_ids) > 0", "scopes": {"billing_accounts": ["vip-{group}"]}}
        ]}"#)).unwrap()
    }

    #[test]
    fn priorities_scope_templates_and_reasons() {
        let out = mapper().map(&input(&["pbx-admins", "PBX-Queue-101", "pbx-queue-102"], None)).unwrap();
        assert_eq!(out.verdict, Verdict::Grant);
        assert_eq!(out.role.as_deref(), Some("PBX admin"));
        assert_eq!(out.scopes.queues, ["101".to_string(), "102".to_string()].into());
        let queue_reason = out.reasons.iter().find(|r| r.grants == "scope:queues=101").unwrap();
        assert_eq!(queue_reason.groups, ["id-PBX-Queue-101"]);
        assert_eq!(queue_reason.rule.as_deref(), Some("queues"));

        let out = mapper().map(&input(&["portal-admins", "pbx-admins"], Some("Finance"))).unwrap();
        assert_eq!(out.role.as_deref(), Some("Customer admin"), "higher priority wins; names ignore case");
        assert_eq!(out.access_profile.as_deref(), Some("Full portal"));
        assert!(out.scopes.full_call_reports);
    }

    #[test]
    fn deny_attributes_ids_and_expressions() {
        let out = mapper().map(&input(&["leavers", "pbx-admins"], None)).unwrap();
        assert_eq!(out.verdict, Verdict::Deny);
        let out = mapper().map(&input(&["portal-admins", "leavers"], None)).unwrap();
        assert_eq!(out.verdict, Verdict::Grant, "a higher-priority grant outranks the deny");
        let out = mapper().map(&input(&[], Some("Finance"))).unwrap();
        assert_eq!(out.role.as_deref(), Some("Operations manager"));
        let mut by_id = input(&[], None);
        by_id.groups.push(ExternalGroup {
            source: SourceKind::Ldap,
            id: "0a1b".into(),
            display_name: "renamed".into(),
            via: vec!["outer".into()],
        });
        assert_eq!(mapper().map(&by_id).unwrap().role.as_deref(), Some("PBX admin"));
        let out = mapper().map(&input(&["vip"], None)).unwrap();
        assert_eq!(out.scopes.billing_accounts, ["vip-vip".to_string()].into());
        assert_eq!(out.role, None, "scopes alone decide no role");
        assert_eq!(mapper().map(&input(&["nothing"], Some("Sales"))).unwrap().verdict, Verdict::Abstain);
    }

    #[test]
    fn scopes_only_grants_do_not_block_a_later_role() {
        let pipeline = Pipeline { mappers: vec![std::sync::Arc::new(mapper())], default_role: Some("Viewer".into()) };
        let d = pipeline.decide(&input(&["pbx-queue-7"], None));
        assert_eq!(d.role.as_deref(), Some("Viewer"));
        assert_eq!(d.scopes.queues, ["7".to_string()].into());
    }

    #[test]
    fn invalid_rules_are_named() {
        let bad = |json: &str| RulesMapper::new(&rules(json)).unwrap_err().to_string();
        assert!(bad(r#"{"rules": [{"name": "a", "groups": ["x"]}]}"#).contains("grants nothing"));
        assert!(bad(r#"{"rules": [{"name": "a", "groups": ["q-*"], "scopes": {"queues": ["{2}"]}}]}"#).contains("{2}"));
        assert!(bad(r#"{"rules": [{"name": "a", "expression": "((", "role": "r"}]}"#).contains("does not compile"));
        assert!(bad(r#"{"rules": [{"name": "a", "role": "r"}, {"name": "a", "role": "r"}]}"#).contains("twice"));
        assert!(bad(r#"{"rules": [{"name": "a", "effect": "deny", "role": "r"}]}"#).contains("cannot also grant"));
    }

    #[test]
    fn directory_teams_become_portal_groups_with_group_scoped_rights() {
        let mapper = RulesMapper::new(&rules(
            r#"{"rules": [
            {"name": "teams", "groups": ["pbx-team-*"],
             "scopes": {"groups": ["{1}"], "group_rights": {"co_monitoring": ["{1}"]}}},
            {"name": "supervisors", "groups": ["supervisors"],
             "scopes": {"group_rights": {"statistics": ["*"], "administration": ["sales"]}}}
        ]}"#,
        ))
        .unwrap();
        let out = mapper.map(&input(&["pbx-team-sales", "pbx-team-support", "supervisors"], None)).unwrap();
        assert_eq!(out.scopes.groups, ["sales".to_string(), "support".to_string()].into());
        assert_eq!(
            out.scopes.group_rights["co_monitoring"],
            GroupReach::Groups(["sales".to_string(), "support".to_string()].into())
        );
        assert_eq!(out.scopes.group_rights["statistics"], GroupReach::All);
        assert_eq!(out.scopes.administration(), Some(&GroupReach::Groups(["sales".to_string()].into())));
        let grants: Vec<&str> = out.reasons.iter().map(|r| r.grants.as_str()).collect();
        for grant in ["scope:groups=sales", "scope:co_monitoring=support", "scope:statistics=all"] {
            assert!(grants.contains(&grant), "{grant} missing from {grants:?}");
        }
        let bad = |json: &str| RulesMapper::new(&rules(json)).unwrap_err().to_string();
        assert!(
            bad(r#"{"rules": [{"name": "a", "scopes": {"group_rights": {"statistics": []}}}]}"#)
                .contains("names no group")
        );
        assert!(
            bad(r#"{"rules": [{"name": "a", "scopes": {"group_rights": {"Stats": ["x"]}}}]}"#).contains("snake_case")
        );
        assert!(bad(r#"{"rules": [{"name": "a", "groups": ["t-*"], "scopes": {"groups": ["{2}"]}}]}"#).contains("{2}"));
    }
}
