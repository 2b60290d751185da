//! `individual explain`: why an individual has its role, access profile, scopes and
//! status — the sources and their groups, the rules or plugins, the dates — and what the
//! mapping would decide from the sources now.

use idbridge_core::DomainResult;
use idbridge_core::audit::AuditQuery;
use idbridge_core::individual::{DateOrigin, Individual, IndividualStatus, SourceKind};
use idbridge_core::mapping::{Decision, Reason};
use idbridge_core::reconcile::{SourcePerson, mapping_input};
use idbridge_core::schedule::LocalInstant;
use idbridge_core::source_record::ScimKind;
use idbridge_core::tenant::{DeprovisionAction, Tenant, TenantSlug};
use serde::Serialize;

use crate::reconciliation::SourceReconciliation;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub tenant: String,
    pub id: String,
    pub login: String,
    pub status: IndividualStatus,
    /// Why the status is what it is, in words.
    pub status_because: String,
    pub role: Option<String>,
    pub role_because: Vec<Reason>,
    pub access_profile: Option<String>,
    pub access_profile_because: Vec<Reason>,
    pub scopes: Vec<ScopeExplanation>,
    pub time_zone: String,
    pub activation: Option<DateExplanation>,
    pub expiration: Option<DateExplanation>,
    pub sources: Vec<SourceExplanation>,
    /// What the mapping decides from the sources now; `None` when no source record is
    /// available to decide from.
    pub decision_now: Option<Decision>,
    /// Re-decisions owed and not yet settled (durable intents), with their failures.
    pub pending: Vec<PendingIntent>,
    /// The latest audit entries about this individual, newest last.
    pub history: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ScopeExplanation {
    pub scope: String,
    /// `mapping` reasons, or `manual` when set by hand.
    pub because: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DateExplanation {
    pub local: String,
    pub at: jiff::Timestamp,
    pub from: Option<DateOrigin>,
}

#[derive(Debug, Serialize)]
pub struct SourceExplanation {
    pub source: SourceKind,
    pub connection: String,
    pub external_id: String,
    /// Whether the source still has this person.
    pub present: bool,
    pub active: Option<bool>,
    /// The groups as the mapping sees them, nested ones with their path.
    pub groups: Vec<String>,
    /// When the source last told idbridge about the person (a SCIM write, a sign-in).
    pub seen_at: Option<jiff::Timestamp>,
}

#[derive(Debug, Serialize)]
pub struct PendingIntent {
    pub source: SourceKind,
    pub connection: String,
    pub since: jiff::Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
}

fn date(d: &Option<LocalInstant>, from: Option<DateOrigin>) -> Option<DateExplanation> {
    d.as_ref().map(|d| DateExplanation { local: d.local.to_string(), at: d.at, from })
}

fn status_because(tenant: &Tenant, i: &Individual) -> String {
    let days = |n: u32| jiff::SignedDuration::from_hours(24 * i64::from(n));
    match i.status {
        IndividualStatus::Pending => match &i.activation {
            Some(a) => format!("activation {} {} ({}) has not come yet", a.local, i.time_zone, a.at),
            None => "pending".into(),
        },
        IndividualStatus::Active => match (&i.activation, &i.expiration) {
            (_, Some(e)) => format!("active; expires {} {} ({})", e.local, i.time_zone, e.at),
            (Some(a), None) => format!("active since activation {} {} ({})", a.local, i.time_zone, a.at),
            (None, None) => "active; no activation or expiration date".into(),
        },
        IndividualStatus::Suspended => match i.deprovisioned_at {
            Some(at) => format!(
                "deprovisioned at {at} (removed at the source or denied by the mapping); the tenant's policy \
                 suspends for {} days, so it expires at {}",
                tenant.policy.suspend_grace_days,
                at.checked_add(days(tenant.policy.suspend_grace_days)).unwrap_or(at)
            ),
            None => "the source says the account is inactive".into(),
        },
        IndividualStatus::Expired => {
            // Retention counts from when access was taken, as the scheduler counts it.
            let since = i.access_ended_at.or(i.deprovisioned_at).unwrap_or(i.updated_at);
            let why = match (i.deprovisioned_at, &i.expiration) {
                (Some(at), _) => match tenant.policy.deprovision_action {
                    DeprovisionAction::Expire => {
                        format!("deprovisioned at {at} and the tenant's policy expires at once")
                    }
                    DeprovisionAction::Suspend => format!("deprovisioned at {at}; the suspension grace period ended"),
                },
                (None, Some(e)) => {
                    format!("expiration {} {} ({}) passed; access ended at {since}", e.local, i.time_zone, e.at)
                }
                (None, None) => "expired".into(),
            };
            format!(
                "{why}; personal data is purged after {} days, at {}",
                tenant.policy.retention_days,
                since.checked_add(days(tenant.policy.retention_days)).unwrap_or(since)
            )
        }
        IndividualStatus::Deleted => "personal data purged after the retention period; the audit trail remains".into(),
    }
}

pub async fn explain(rec: &SourceReconciliation, slug: &TenantSlug, id_or_login: &str) -> DomainResult<Explanation> {
    let operator = &rec.mapping.operator;
    let tenant = operator.tenant(slug).await?;
    let i = operator.individual(slug, id_or_login).await?;
    let reasons =
        |part: &str| -> Vec<Reason> { i.provenance.mapping.iter().filter(|r| r.grants == part).cloned().collect() };
    // Every grant, with the rules behind it and "manual" when set by hand.
    let manual = i.provenance.manual_scopes.entries();
    let scopes = i
        .scopes
        .entries()
        .into_iter()
        .map(|entry| {
            let scope = format!("scope:{entry}");
            let mut because: Vec<String> = i
                .provenance
                .mapping
                .iter()
                .filter(|r| r.grants == scope)
                .map(|r| format!("{} rule {} groups {:?}", r.mapper, r.rule.as_deref().unwrap_or("-"), r.groups))
                .collect();
            if manual.contains(&entry) {
                because.push("manual".into());
            }
            ScopeExplanation { scope, because }
        })
        .collect();
    let (sources, decision_now) = sources_and_decision(rec, &tenant, &i).await?;
    let pending = rec
        .intents
        .intents_of(tenant.id, &i.links)
        .await?
        .into_iter()
        .map(|intent| PendingIntent {
            source: intent.person.source,
            connection: intent.person.connection,
            since: intent.created_at,
            attempts: intent.attempts,
            last_error: intent.last_error,
        })
        .collect();
    let history = operator
        .audit(Some(slug), AuditQuery { subject: Some(i.id.to_string()), limit: 1000, ..AuditQuery::default() })
        .await?
        .into_iter()
        .rev()
        .take(20)
        .rev()
        .map(|e| {
            format!("{} {} by {}:{}", e.record.at, e.record.action, e.record.actor.kind.as_str(), e.record.actor.id)
        })
        .collect();
    Ok(Explanation {
        tenant: tenant.slug.to_string(),
        id: i.id.to_string(),
        login: i.login.clone(),
        status: i.status,
        status_because: status_because(&tenant, &i),
        role: i.role.clone(),
        role_because: reasons("role"),
        access_profile: i.access_profile.clone(),
        access_profile_because: reasons("access_profile"),
        scopes,
        time_zone: i.time_zone.clone(),
        activation: date(&i.activation, i.provenance.activation_from),
        expiration: date(&i.expiration, i.provenance.expiration_from),
        sources,
        decision_now,
        pending,
        history,
    })
}

/// Every source of the individual as it stands now, and what the mapping decides from
/// the merged view of them (`SourceReconciliation::with_linked_sources`, as reconciliation
/// decides): the highest-ranked source present stands first.
async fn sources_and_decision(
    rec: &SourceReconciliation,
    tenant: &Tenant,
    i: &Individual,
) -> DomainResult<(Vec<SourceExplanation>, Option<Decision>)> {
    let mut sources = Vec::new();
    let mut primary: Option<SourcePerson> = None;
    for link in &i.links {
        let mut source = SourceExplanation {
            source: link.source,
            connection: link.connection.clone(),
            external_id: link.external_id.clone(),
            present: false,
            active: None,
            groups: Vec::new(),
            seen_at: None,
        };
        let person = match link.source {
            SourceKind::Scim => match link.external_id.parse() {
                Ok(id) => match rec.records.get_scim(tenant.id, ScimKind::User, id).await? {
                    Some(record) => {
                        let groups = rec.records.list_scim_groups_of(tenant.id, id).await?;
                        source.seen_at = Some(record.updated_at);
                        Some(crate::scim_person::from_record(&record, &groups))
                    }
                    None => None,
                },
                Err(_) => None,
            },
            SourceKind::Ldap => rec.directory.directory_person(tenant.id, &link.connection, &link.external_id).await?,
            SourceKind::Oidc => rec.logins.login_record(tenant.id, link).await?.map(|(person, at)| {
                source.seen_at = Some(at);
                person
            }),
            SourceKind::Manual => {
                source.present = true;
                None
            }
        };
        if let Some(person) = person {
            source.present = true;
            source.active = Some(person.active);
            source.groups = person.groups.iter().map(group_line).collect();
            // Logins decide only people no provisioning source knows.
            let decides = link.source != SourceKind::Oidc || crate::reconciliation::login_only(i);
            if decides
                && primary.as_ref().is_none_or(|p| {
                    crate::reconciliation::rank(p.link.source) > crate::reconciliation::rank(link.source)
                })
            {
                primary = Some(person);
            }
        }
        sources.push(source);
    }
    let Some(primary) = primary else { return Ok((sources, None)) };
    let merged = rec.with_linked_sources(tenant, vec![(primary, Some(i.clone()))]).await?;
    let pipeline = rec.mapping.pipeline(tenant).await?;
    let input = merged.first().map(|(person, _)| mapping_input(tenant, person, Some(i)));
    let decision = match input {
        Some(input) => tokio::task::spawn_blocking(move || pipeline.decide(&input)).await.ok(),
        None => None,
    };
    Ok((sources, decision))
}

/// A group as the mapping sees it, with the nesting path it was reached by.
fn group_line(group: &idbridge_core::mapping::ExternalGroup) -> String {
    if group.via.is_empty() {
        group.display_name.clone()
    } else {
        format!("{} (via {})", group.display_name, group.via.join(" > "))
    }
}
