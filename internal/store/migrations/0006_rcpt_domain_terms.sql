-- smtplog store, schema version 6: recipient domains as terms.
--
-- A search by recipient domain finds its records through "terms" (tag
-- 'd', see terms.go), in the buckets of its time range, instead of through
-- an index on rcpts (domain, ts). Ordered by domain, that index took each
-- new batch's entries all over itself, one page written per domain per
-- transaction: of the bytes a bulk load wrote, the most for any one index.
DROP INDEX rcpts_domain;

-- The records stored before this version get their terms once, at the next
-- open, in chunks (backfill.go): every record with an id up to "done" has
-- them. The table goes when all have.
CREATE TABLE rcpt_domain_backfill (
	one  INTEGER PRIMARY KEY CHECK (one = 1),
	done INTEGER NOT NULL
);
INSERT INTO rcpt_domain_backfill (one, done) VALUES (1, 0);
