//! What a change did to an individual's access, typed: the before and after of its role,
//! access profile, scopes and status, and whether anything was taken away. Change events
//! carry it as JSON (`{"role": [before, after], …}`) to webhooks, the Portal API's feed
//! and the logout consumer; it is read back tolerantly (a field a newer version added is
//! ignored, a missing one is "unchanged").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{ChangeEvent, ChangeKind};
use crate::catalog::Catalog;
use crate::individual::{Individual, IndividualStatus};
use crate::role::{AccessProfile, Role};
use crate::scopes::Scopes;

/// Each field as `(before, after)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PermissionDiff {
    pub role: (Option<String>, Option<String>),
    pub access_profile: (Option<String>, Option<String>),
    pub scopes: (Scopes, Scopes),
    pub status: (Option<IndividualStatus>, Option<IndividualStatus>),
}

impl PermissionDiff {
    pub fn between(before: &Individual, after: &Individual) -> Self {
        Self {
            role: (before.role.clone(), after.role.clone()),
            access_profile: (before.access_profile.clone(), after.access_profile.clone()),
            scopes: (before.scopes.clone(), after.scopes.clone()),
            status: (Some(before.status), Some(after.status)),
        }
    }

    /// As change events store it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// From a change event; `None` when it is not a diff at all.
    pub fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// Whether the change takes anything away: access ending (a status other than active
    /// after a change of status), a role that grants more somewhere than the new one, a
    /// profile flag turned off, or a scope lost. Roles and profiles are looked up by name
    /// as the operator defines them now.
    pub fn takes_access(
        &self,
        roles: &BTreeMap<String, Role>,
        profiles: &BTreeMap<String, AccessProfile>,
        catalog: &Catalog,
    ) -> bool {
        let (status_before, status_after) = self.status;
        if status_before != status_after && status_after != Some(IndividualStatus::Active) {
            return true;
        }
        let (role_before, role_after) = &self.role;
        if role_before != role_after {
            let before = role_before.as_deref().and_then(|r| roles.get(r));
            let after = role_after.as_deref().and_then(|r| roles.get(r));
            match (before, after) {
                (Some(b), Some(a)) if b.is_within(a, catalog) => {}
                (None, _) => {}
                _ => return true,
            }
        }
        let (profile_before, profile_after) = &self.access_profile;
        if profile_before != profile_after {
            let flags = |p: &Option<String>| {
                p.as_deref().and_then(|p| profiles.get(p)).map(|p| p.flags.clone()).unwrap_or_default()
            };
            if !flags(profile_before).is_subset(&flags(profile_after)) {
                return true;
            }
        }
        let (scopes_before, scopes_after) = &self.scopes;
        !scopes_before.is_within(scopes_after)
    }
}

/// Whether a change event ends its individual's sessions everywhere (the `sso-logout`
/// consumer): anything taken away, and any change of group memberships or group-scoped
/// rights, given or taken (seed 003: "Changing these permissions will cause the user to be
/// logged out of all applications").
pub fn access_shrank(
    event: &ChangeEvent,
    roles: &BTreeMap<String, Role>,
    profiles: &BTreeMap<String, AccessProfile>,
    catalog: &Catalog,
) -> bool {
    match event.kind {
        ChangeKind::IndividualSuspended | ChangeKind::IndividualExpired | ChangeKind::IndividualDeleted => true,
        ChangeKind::IndividualCreated | ChangeKind::IndividualActivated => false,
        ChangeKind::IndividualUpdated => {
            event.permission_diff.as_ref().and_then(PermissionDiff::from_value).is_some_and(|diff| {
                diff.scopes.0.group_scopes_differ(&diff.scopes.1) || diff.takes_access(roles, profiles, catalog)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_shape_is_before_and_after_per_field_and_reads_back_tolerantly() {
        let diff = PermissionDiff {
            role: (Some("PBX admin".into()), Some("Reader".into())),
            status: (Some(IndividualStatus::Active), Some(IndividualStatus::Active)),
            ..Default::default()
        };
        let value = diff.to_value();
        assert_eq!(value["role"], serde_json::json!(["PBX admin", "Reader"]));
        assert_eq!(value["status"], serde_json::json!(["active", "active"]));
        let mut newer = value.clone();
        newer["a_field_from_a_newer_version"] = serde_json::json!([1, 2]);
        assert_eq!(PermissionDiff::from_value(&newer), Some(diff));
        let partial = serde_json::json!({"status": ["active", "suspended"]});
        let read = PermissionDiff::from_value(&partial).unwrap();
        assert_eq!(read.status, (Some(IndividualStatus::Active), Some(IndividualStatus::Suspended)));
        assert_eq!(read.role, (None, None), "a missing field is unchanged");
    }

    #[test]
    fn scopes_lost_and_status_ended_take_access() {
        let (roles, profiles, catalog) = (BTreeMap::new(), BTreeMap::new(), Catalog::default());
        let mut before = Scopes::default();
        before.queues.insert("101".into());
        let lost = PermissionDiff { scopes: (before.clone(), Scopes::default()), ..Default::default() };
        assert!(lost.takes_access(&roles, &profiles, &catalog));
        let gained = PermissionDiff { scopes: (Scopes::default(), before), ..Default::default() };
        assert!(!gained.takes_access(&roles, &profiles, &catalog));
        let ended = PermissionDiff {
            status: (Some(IndividualStatus::Active), Some(IndividualStatus::Suspended)),
            ..Default::default()
        };
        assert!(ended.takes_access(&roles, &profiles, &catalog));
    }

    #[test]
    fn any_change_of_groups_or_group_rights_ends_sessions_and_other_gains_do_not() {
        let (roles, profiles, catalog) = (BTreeMap::new(), BTreeMap::new(), Catalog::default());
        let event = |before: Scopes, after: Scopes| ChangeEvent {
            id: uuid::Uuid::new_v4(),
            tenant_id: crate::tenant::TenantId(uuid::Uuid::new_v4()),
            individual_id: crate::individual::IndividualId(uuid::Uuid::new_v4()),
            kind: ChangeKind::IndividualUpdated,
            individual: Value::Null,
            permission_diff: Some(PermissionDiff { scopes: (before, after), ..Default::default() }.to_value()),
            at: crate::clock::now(),
        };
        let none = Scopes::default();
        let member = Scopes { groups: ["sales".into()].into(), ..Default::default() };
        let right = Scopes {
            group_rights: [("statistics".into(), crate::scopes::GroupReach::All)].into(),
            ..Default::default()
        };
        let queue = Scopes { queues: ["101".into()].into(), ..Default::default() };
        assert!(access_shrank(&event(none.clone(), member.clone()), &roles, &profiles, &catalog), "joined a group");
        assert!(access_shrank(&event(none.clone(), right.clone()), &roles, &profiles, &catalog), "gained a right");
        assert!(access_shrank(&event(right, none.clone()), &roles, &profiles, &catalog), "lost a right");
        assert!(!access_shrank(&event(none, queue), &roles, &profiles, &catalog), "a queue gained keeps sessions");
    }
}
