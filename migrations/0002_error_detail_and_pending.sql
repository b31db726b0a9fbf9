-- zupertry-webhooks D1 schema, v2. Read src/store/README.md for the reasons behind it.

-- Why a failed attempt failed, in a short sentence of our own words ("the TLS handshake
-- failed", "no response within 10000 ms"): never a raw runtime message.
ALTER TABLE attempts ADD COLUMN error_detail TEXT CHECK (length(error_detail) <= 200);

-- Only a delivery's last attempt keeps `next_attempt_at` from now on (the consumer clears
-- the previous one when it logs the next), so the index below holds exactly the pending
-- deliveries. Rows logged before this migration are brought in line here.
UPDATE attempts SET next_attempt_at = NULL
 WHERE next_attempt_at IS NOT NULL
   AND EXISTS (SELECT 1 FROM attempts AS later WHERE later.delivery_id = attempts.delivery_id AND later.attempt > attempts.attempt);

-- The pending deliveries by due time: the stall sweep reads only the overdue ones.
CREATE INDEX attempts_pending ON attempts (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
