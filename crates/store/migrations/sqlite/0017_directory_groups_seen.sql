-- How a directory's groups list each person (member_key: a normalised DN, or the login for
-- memberUid) and a digest of the groups that gave the person at the run that wrote the
-- record. An incremental run reads only changed users but every group: it compares these
-- with what today's groups give each key and reads only the records that differ. NULL in
-- records from before (and for memberOf sources): such a record is regrouped at the next
-- run, which fills them in.
ALTER TABLE directory_records ADD COLUMN member_key TEXT;
ALTER TABLE directory_records ADD COLUMN groups_digest TEXT;
