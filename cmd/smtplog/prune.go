package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPruneCmd(e *env) *cobra.Command {
	var (
		db       string
		olderMax time.Duration
		maxBytes int64
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete old records from the store (serve also does this on its own with --retention-*)",
		Example: `  smtplog prune --older-than 720h
  smtplog prune --max-bytes 10000000000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderMax <= 0 && maxBytes <= 0 {
				return exitError{code: 2, msg: "prune: give --older-than DURATION, --max-bytes N, or both"}
			}
			ctx := cmd.Context()
			st, err := openStoreForReading(ctx, db)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer st.Close(context.WithoutCancel(ctx))
			var before time.Time
			if olderMax > 0 {
				before = time.Now().Add(-olderMax)
			}
			res, err := st.Prune(ctx, before, maxBytes)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			fmt.Fprintf(e.stdout, "deleted %d records; the store now holds %d bytes\n", res.Deleted, res.Bytes)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&db, "db", "smtplog.db", "the store (SQLite file)")
	fs.DurationVar(&olderMax, "older-than", 0, "delete records older than this, e.g. 720h")
	fs.Int64Var(&maxBytes, "max-bytes", 0, "then delete the oldest records while the store is larger than this")
	return cmd
}
