-- smtplog store, schema version 3: hourly roll-ups for the dashboard.
--
-- Every committed batch adds, per hour of its records' timestamps, a row
-- with what those records add to the dashboard's aggregates (rollup.go);
-- deleted records add the same with negative counts. The rows of an hour
-- are merged from time to time. Stats sums the rows of the whole hours of
-- a range and scans records only for the partial hours at its ends, so the
-- dashboard's cost grows with the hours of its range, not their records.

-- Recipients by time served only the dashboard's scans, which now read
-- them through records_ts for the ragged ends of a range alone.
DROP INDEX rcpts_ts;

CREATE TABLE rollups (
	id   INTEGER PRIMARY KEY,
	hour INTEGER NOT NULL,                 -- floor(ts / 1 hour), Unix hours
	data BLOB    NOT NULL                  -- see rollup.go
);
CREATE INDEX rollups_hour ON rollups (hour, id);

-- What deleted records took away, until the writer turns it into negative
-- roll-up rows in the same transaction (always empty between transactions).
CREATE TABLE rollup_gone (
	ts          INTEGER NOT NULL,
	kind        INTEGER NOT NULL,          -- 0 a record, 1 one of its recipients
	type        TEXT,
	status      TEXT,
	reply_code  INTEGER,
	tls         INTEGER,
	latency_ms  REAL,
	auth_result TEXT,
	addr        TEXT                       -- mail_from for a record, the address for a recipient
);

CREATE TRIGGER rollup_records_gone AFTER DELETE ON records
BEGIN
	INSERT INTO rollup_gone VALUES (old.ts, 0, old.type, old.status, old.reply_code, old.tls,
		old.latency_ms, old.auth_result, old.mail_from);
END;

CREATE TRIGGER rollup_rcpts_gone AFTER DELETE ON rcpts
BEGIN
	INSERT INTO rollup_gone (ts, kind, addr) VALUES (old.ts, 1, old.addr);
END;
