-- smtplog store, schema version 1.
--
-- One row per record in "records" (message and session records share it, so
-- that one search, one keyset pager and one retention pass cover both). The
-- full record is kept as JSON in records.body, without its transcript, which
-- lives compressed in "transcripts"; the other columns are derived from the
-- record (see package query) and exist to be indexed. Times are Unix
-- nanoseconds, UTC.

CREATE TABLE records (
	id          INTEGER PRIMARY KEY,
	type        TEXT    NOT NULL,          -- message, session
	ts          INTEGER NOT NULL,          -- timestamp
	source      TEXT,
	session_id  TEXT,
	message_id  TEXT,                      -- without angle brackets
	queue_id    TEXT,
	mail_from   TEXT,                      -- lower case; '' is the null sender; NULL: no MAIL seen
	from_domain TEXT,                      -- lower case; NULL when none
	client_ip   BLOB,                      -- 4 bytes (IPv4) or 16 (IPv6)
	username    TEXT,                      -- lower case
	helo        TEXT,                      -- lower case
	status      TEXT,
	reply_code  INTEGER,                   -- final reply
	tls         INTEGER NOT NULL,          -- 1 when the client leg used TLS
	subject     TEXT,
	size        INTEGER,
	latency_ms  REAL,
	auth_result TEXT,                      -- session records: success, failure, aborted
	body        BLOB    NOT NULL           -- the record as JSON, transcript left out
);

-- Time ranges, keyset paging, and the dashboard's aggregates (covering).
CREATE INDEX records_ts ON records (ts, type, status, reply_code, tls, latency_ms, auth_result, mail_from);
-- Capture retention (raw_messages) and Store.Session look these up.
CREATE INDEX records_queue_id ON records (queue_id) WHERE queue_id IS NOT NULL;
CREATE INDEX records_session_id ON records (session_id, ts) WHERE session_id IS NOT NULL;
-- Few distinct keys, each appended to in time order; searches by domain
-- over a time range read them newest first and stop at a page.
CREATE INDEX records_from_domain ON records (from_domain, ts) WHERE from_domain IS NOT NULL;

-- Exact-key lookups (Message-ID, sender, client address, recipient, a
-- delivery's queue ID): one entry per distinct key of a record, keyed by a
-- 4-hour bucket of the record's timestamp first, so that a batch of new
-- records touches only the current bucket's pages instead of one page per
-- key across the whole index. h is a field-tagged 64-bit FNV-1a hash of the value as
-- stored in its column (see terms.go); a lookup probes every bucket in
-- "buckets" (or those a time range leaves) and then compares the column
-- itself, so a collision costs a wasted probe, never a wrong answer.
CREATE TABLE terms (
	bucket INTEGER NOT NULL,               -- floor(ts / 4 hours)
	h      INTEGER NOT NULL,
	rid    INTEGER NOT NULL,               -- records.id
	PRIMARY KEY (bucket, h, rid)
) WITHOUT ROWID;

-- The buckets that have terms.
CREATE TABLE buckets (
	b INTEGER PRIMARY KEY
);

-- Every distinct recipient of a record. kind is a bit set: 1 accepted
-- (rcpt_to), 2 refused (rejected_rcpt), 4 delivered to (deliveries).
CREATE TABLE rcpts (
	record_id INTEGER NOT NULL,
	addr      TEXT    NOT NULL,            -- lower case
	domain    TEXT,                        -- lower case; NULL when none
	ts        INTEGER NOT NULL,            -- the record's
	kind      INTEGER NOT NULL,
	PRIMARY KEY (record_id, addr)
) WITHOUT ROWID;
CREATE INDEX rcpts_domain ON rcpts (domain, ts) WHERE domain IS NOT NULL;
CREATE INDEX rcpts_ts ON rcpts (ts, kind, addr);

-- Refused recipients with the reply each got.
CREATE TABLE rejected (
	record_id INTEGER NOT NULL,
	seq       INTEGER NOT NULL,
	addr      TEXT    NOT NULL,
	response  TEXT    NOT NULL,
	PRIMARY KEY (record_id, seq)
) WITHOUT ROWID;

-- Delivery attempts from MTA logs.
CREATE TABLE deliveries (
	record_id INTEGER NOT NULL,
	seq       INTEGER NOT NULL,
	ts        INTEGER NOT NULL,
	rcpt      TEXT    NOT NULL,
	status    TEXT    NOT NULL,
	relay     TEXT,
	dsn       TEXT,
	response  TEXT,
	delay_s   REAL,
	queue_id  TEXT,                        -- a re-injected copy's queue ID
	PRIMARY KEY (record_id, seq)
) WITHOUT ROWID;

-- Every distinct reply code seen in a record (query.Codes); 0 and '' when
-- a part is unknown.
CREATE TABLE codes (
	record_id INTEGER NOT NULL,
	reply     INTEGER NOT NULL,
	enhanced  TEXT    NOT NULL,
	PRIMARY KEY (record_id, reply, enhanced)
) WITHOUT ROWID;

-- Transcripts, as DEFLATE-compressed JSON arrays.
CREATE TABLE transcripts (
	record_id INTEGER PRIMARY KEY,
	data      BLOB NOT NULL
);

-- Free text: subject and reply texts (query.Text), rowid = records.id.
CREATE VIRTUAL TABLE fts USING fts5 (
	text,
	content = '',
	contentless_delete = 1,
	tokenize = 'unicode61 remove_diacritics 0'
);
