-- The source change (one SCIM request: a Bulk request's operations share it) an intent
-- was recorded by. The worker takes a change's intents together, and only once all of
-- them are due, so that its people are planned as one change set — the mass-deprovision
-- guard judges the whole request, never a slice of it. NULL: an intent of its own (a
-- sign-in, a re-decision asked for by an operator).
ALTER TABLE reconcile_intents ADD COLUMN change_id TEXT;
CREATE INDEX reconcile_intents_by_change ON reconcile_intents (change_id, due_at);
