-- smtplog store, schema version 8: daily roll-ups.
--
-- A dashboard over a month summed some 700 hourly roll-up rows, each with
-- its senders, recipients and latencies, which took seconds. The writer
-- now also sums the hours of each day two days old into one row here
-- (rollup.go); Stats uses it for the whole days of its range and the
-- hourly rows for the rest. A day's row exists only while it is the sum of
-- the day's hourly rows: whatever adds an hourly row deletes it, and the
-- writer makes it again later.
CREATE TABLE rollup_days (
	day  INTEGER PRIMARY KEY,              -- floor(hour / 24), Unix days
	data BLOB    NOT NULL                  -- an agg whose series slots are minutes of the day
);
