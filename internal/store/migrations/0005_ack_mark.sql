-- smtplog store, schema version 5: the acknowledgement log's mark.
--
-- A store on disk acknowledges a record once it is in its acknowledgement
-- log (PATH-ack, see acklog.go) and inserts it here later, with many
-- others, in a transaction that also moves this mark: every record of the
-- log with a sequence number up to "upto" is in the database (or was
-- deleted since).
-- At open, the records of the log above it are inserted, so each record
-- is inserted exactly once, and one deleted after its insertion never
-- comes back.

CREATE TABLE ack_mark (
	one  INTEGER PRIMARY KEY CHECK (one = 1),
	upto INTEGER NOT NULL
);

INSERT INTO ack_mark (one, upto) VALUES (1, 0);
