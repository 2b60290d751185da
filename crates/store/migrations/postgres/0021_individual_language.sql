-- The language an individual is written to in (a BCP 47 tag: SCIM preferredLanguage, or
-- set when created by hand). NULL: the tenant's language, as for everyone stored before.
ALTER TABLE individuals ADD COLUMN language TEXT;
