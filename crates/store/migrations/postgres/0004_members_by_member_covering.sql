-- Looking up a user's groups must not scan the tenant's memberships: SQLite preferred the
-- covering primary key (tenant_id, group_id, member_id) with only tenant_id bound over a
-- narrower non-covering index. This index covers the lookup itself.
DROP INDEX scim_members_by_member;
CREATE INDEX scim_members_by_member ON scim_members (tenant_id, member_id, group_id);
