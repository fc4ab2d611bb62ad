-- smtplog store, schema version 2: the exact bytes of captured messages.
--
-- One row per message kept by capture mode, keyed by the queue ID the
-- capture server gave it (records.queue_id of its message record). The
-- bytes are compressed (codec 1: DEFLATE); size is the uncompressed
-- length. id is the arrival order, which capture retention ("keep the
-- newest N") walks. read and tags are the viewer's marks.

CREATE TABLE raw_messages (
	id       INTEGER PRIMARY KEY,
	queue_id TEXT    NOT NULL UNIQUE,
	ts       INTEGER NOT NULL,             -- arrival, Unix nanoseconds
	size     INTEGER NOT NULL,
	codec    INTEGER NOT NULL,
	read     INTEGER NOT NULL DEFAULT 0,
	tags     TEXT    NOT NULL DEFAULT '',  -- JSON array of strings; '' when none
	data     BLOB    NOT NULL
);
CREATE INDEX raw_messages_ts ON raw_messages (ts);

-- Whatever deletes a message record (time and size retention, prune)
-- deletes its bytes with it.
CREATE TRIGGER raw_messages_follow_records AFTER DELETE ON records
WHEN old.type = 'message' AND old.queue_id IS NOT NULL
BEGIN
	DELETE FROM raw_messages WHERE queue_id = old.queue_id;
END;
