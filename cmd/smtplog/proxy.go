package main

import (
	"github.com/spf13/cobra"
)

func newProxyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the logging relay between SMTP clients and an upstream MTA",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exitError{code: 2, msg: "proxy: not built yet"}
		},
	}
	return cmd
}
