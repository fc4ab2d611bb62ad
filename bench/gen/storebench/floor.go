package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/smtplog/smtplog/bench/gen"
	"github.com/smtplog/smtplog/internal/record"
)

// floor measures the engine's ceiling for this workload: the same records,
// encoded as the store encodes a record's body, inserted one row per record
// into a bare table (an integer key, a timestamp, the body; no index, no
// derived row) through the same driver, journal mode and sync level, in
// transactions as large as the store's. The bodies are encoded before the
// clock starts, so the figure is SQLite's alone. No layout that keeps a
// row per record can insert faster than this.
func floor(ctx context.Context, path string, n, perTx int, syncLevel string, start time.Time, span time.Duration) (perSec float64, err error) {
	g := gen.New(gen.Config{Seed: 7, Start: start, Span: span, N: n, TranscriptEvery: 20})
	type body struct {
		ts int64
		b  []byte
	}
	bodies := make([]body, n)
	for i := range bodies {
		r := g.Next()
		c := *r
		c.Transcript = nil
		b, err := record.MarshalJSONLine(&c)
		if err != nil {
			return 0, err
		}
		bodies[i] = body{r.Timestamp.UnixNano(), bytes.TrimSuffix(b, []byte("\n"))}
	}

	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", syncLevel)
	v.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+v.Encode())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE bare (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, body BLOB NOT NULL)`); err != nil {
		return 0, err
	}
	// Multi-row statements, as the store's writer uses.
	const perStmt = 50
	stmt, err := db.PrepareContext(ctx, `INSERT INTO bare (id, ts, body) VALUES `+strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", perStmt), ", "))
	if err != nil {
		return 0, err
	}
	defer stmt.Close()

	t0 := time.Now()
	args := make([]any, 0, 3*perStmt)
	for i := 0; i < n; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		st := tx.StmtContext(ctx, stmt)
		for end := min(i+perTx, n); i+perStmt <= end; i += perStmt {
			args = args[:0]
			for j := i; j < i+perStmt; j++ {
				args = append(args, j+1, bodies[j].ts, bodies[j].b)
			}
			if _, err := st.ExecContext(ctx, args...); err != nil {
				tx.Rollback()
				return 0, err
			}
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
		if n-i < perStmt {
			break // the remainder is under one statement: leave it out of the rate
		}
	}
	done := n - n%perStmt
	return float64(done) / time.Since(t0).Seconds(), nil
}

// reportFloor prints floor's figure.
func reportFloor(ctx context.Context, path string, n, perTx int, syncLevel string, start time.Time, span time.Duration) error {
	rate, err := floor(ctx, path, n, perTx, syncLevel, start, span)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	fmt.Printf("engine ceiling (the same bodies, one row per record into a bare table, no index, %d per transaction): %.0f records/s\n", perTx, rate)
	return nil
}
