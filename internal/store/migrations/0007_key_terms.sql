-- smtplog store, schema version 7: queue and session IDs as terms.
--
-- Lookups by queue ID (a record's own, tag 'q', which a delivery's queue
-- ID already had) and by session ID (tag 's') go through "terms", in the
-- buckets of their time range, instead of through indexes on records.
-- Those keys are random: every batch put its entries on pages all over
-- both indexes, one page written per record once the store held millions,
-- and the rate of a bulk load fell with the size of the store.
DROP INDEX records_queue_id;
DROP INDEX records_session_id;

-- Capture retention deletes the records of the messages whose bytes go,
-- and the sessions left without a message: capture records only, which
-- these small indexes cover.
CREATE INDEX records_capture_queue_id ON records (queue_id) WHERE source = 'capture';
CREATE INDEX records_capture_session_id ON records (session_id) WHERE source = 'capture';

-- The records stored before this version get their terms once, at the next
-- open (backfill.go): every record with an id up to "done" has them.
CREATE TABLE key_terms_backfill (
	one  INTEGER PRIMARY KEY CHECK (one = 1),
	done INTEGER NOT NULL
);
INSERT INTO key_terms_backfill (one, done) VALUES (1, 0);
