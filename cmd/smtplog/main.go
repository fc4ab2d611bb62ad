// Command smtplog records SMTP traffic from every place it can be seen and
// turns it into one structured record format. This package is the only place
// where inputs and outputs are wired together; one file per subcommand.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// env carries the process's environment into commands so tests can run the
// CLI in-process without touching globals.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, e *env, args []string) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(e.stderr, "smtplog:", ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(e.stderr, "smtplog:", err)
		return 1
	}
	return 0
}

// exitError ends a command with a chosen status.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "smtplog",
		Short:         "Record SMTP traffic from every vantage point as one structured record",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "configuration file (YAML); keys are the long flag names")
	// One line per subcommand; each lives in its own file.
	root.AddCommand(newVersionCmd(e))
	root.AddCommand(newProxyCmd(e))
	root.AddCommand(newServeCmd(e))
	root.AddCommand(newSearchCmd(e))
	root.AddCommand(newTraceCmd(e))
	root.AddCommand(newPruneCmd(e))
	root.AddCommand(newIngestCmd(e))
	root.AddCommand(newReportCmd(e))
	root.AddCommand(newPcapCmd(e))
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return applyConfig(cmd, e)
	}
	return root
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(e.stdout, "smtplog", version)
			return nil
		},
	}
}
