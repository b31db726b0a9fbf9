-- zupertry-webhooks D1 schema, v3. Read src/store/README.md for the reasons behind it.

-- When a key was last used, to within 5 minutes: a request writes it only when the stored
-- time is older than that (src/store/api-keys.ts), so a busy key costs a few writes an
-- hour, not one per request. NULL: never used since this column exists.
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;

-- An org's keys, newest first, for the key list of the org API and the console.
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at);
