-- smtplog store, schema version 4: deferred derived rows.
--
-- A record's own row (records, with its transcript and raw bytes) commits
-- before the record is acknowledged; the rows derived from it (terms,
-- buckets, rcpts, rejected, deliveries, codes, fts, roll-ups) are written
-- later, for many records at once, in a transaction that also moves this
-- mark: every record with an id up to "upto" has its derived rows. At
-- open, the records above it (committed before a crash, not yet indexed)
-- get theirs, so each record is indexed exactly once.

CREATE TABLE index_mark (
	one  INTEGER PRIMARY KEY CHECK (one = 1),
	upto INTEGER NOT NULL
);

-- Every record stored so far was indexed in its own transaction.
INSERT INTO index_mark (one, upto) SELECT 1, coalesce(max(id), 0) FROM records;
