-- zupertry-webhooks D1 schema, v4. Read src/store/README.md for the reasons behind it.

-- Where this shard's retention sweep goes on from (src/store/retention.ts). A run spends
-- a budget of statements and stops, so that none meets D1's limit of queries per
-- invocation however many orgs and expired deliveries the shard holds; the next run
-- starts at this org. '' (or no row): from the first org.
CREATE TABLE retention_progress (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  next_org_id TEXT NOT NULL
);
