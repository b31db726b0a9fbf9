-- zupertry-webhooks D1 schema, v5. Read src/store/README.md for the reasons behind it.

-- The pending deliveries by org, then due time. The stall sweep walks the orgs that have
-- overdue deliveries and takes a share of each (src/store/stalled.ts), so an org with a
-- big backlog of overdue deliveries cannot keep another org's stalled delivery waiting
-- behind it, as it could when the sweep took the shard's oldest ones whoever's they were.
CREATE INDEX attempts_pending_by_org ON attempts (org_id, next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- The sweep was the only reader of the index by due time alone: dropping it saves a row
-- written whenever a delivery becomes pending or stops being so.
DROP INDEX attempts_pending;

-- Where the next stall sweep of this shard goes on from: it serves the orgs with overdue
-- deliveries in turn, by id, so that none waits behind others' backlogs. '' (or no
-- row): from the first org.
CREATE TABLE sweep_progress (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  next_org_id TEXT NOT NULL
);
