-- zupertry-webhooks D1 schema, v1. Read src/store/README.md for the reasons behind it.

-- Org API keys. The key itself is shown once at creation and never stored.
CREATE TABLE api_keys (
  id          TEXT    PRIMARY KEY,                -- key_<hex>, public
  org_id      TEXT    NOT NULL,
  name        TEXT,
  key_hash    TEXT    NOT NULL UNIQUE,            -- hex SHA-256 of the full key
  created_at  INTEGER NOT NULL,                   -- unix ms
  revoked_at  INTEGER                             -- unix ms, NULL while valid
);

-- The delivery log: one row per attempt. A delivery has no row of its own; it is the
-- set of its attempts, and its state is the state of its last attempt.
CREATE TABLE attempts (
  delivery_id        TEXT    NOT NULL,            -- dlv_<hash of org, type, job>
  attempt            INTEGER NOT NULL CHECK (attempt >= 1),
  org_id             TEXT    NOT NULL,
  job_id             TEXT    NOT NULL,
  event_type         TEXT    NOT NULL CHECK (event_type IN ('job.completed', 'job.failed')),
  message_id         TEXT    NOT NULL,            -- the queue message that made the attempt
  attempted_at       INTEGER NOT NULL,            -- unix ms, start of the attempt
  response_time_ms   INTEGER NOT NULL,
  status_code        INTEGER,                     -- NULL when no HTTP status came back
  outcome            TEXT    NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
  error              TEXT    CHECK (error IN ('timeout', 'network_error', 'http_status', 'redirect',
                                              'no_webhook_url', 'invalid_url', 'internal')),
  next_attempt_at    INTEGER,                     -- unix ms the next attempt is due; NULL: none
  url                TEXT,                        -- where it was sent; NULL when there was none
  url_from_event     INTEGER CHECK (url_from_event IN (0, 1)), -- attempt 1 only: url is the event's own
  response_truncated INTEGER NOT NULL DEFAULT 0 CHECK (response_truncated IN (0, 1)),
  -- Compressed (deflate-raw), see src/store/codec.ts. Small columns above, bulky ones last.
  request_body       BLOB,                        -- attempt 1 only: the event body, as sent
  exchange           BLOB,                        -- JSON {signatures, response: {headers, body}}; NULL if nothing was sent
  PRIMARY KEY (delivery_id, attempt),
  CHECK ((outcome = 'succeeded') = (error IS NULL)),
  CHECK (outcome = 'failed' OR next_attempt_at IS NULL),
  CHECK ((attempt = 1) = (request_body IS NOT NULL)),
  CHECK ((attempt = 1) = (url_from_event IS NOT NULL))
) WITHOUT ROWID;

-- The org's log by time (with the primary key appended: a total order). Lists read it
-- backwards, newest first, so the index order is the page order and nothing is sorted.
CREATE INDEX attempts_by_org ON attempts (org_id, attempted_at);
-- Failed attempts only: `outcome=failed` stays an index search even when failures are
-- rare, and successful deliveries pay nothing for it.
CREATE INDEX attempts_failed_by_org ON attempts (org_id, attempted_at) WHERE outcome = 'failed';
