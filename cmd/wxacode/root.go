package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// Exit codes of the command-line contract.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError marks bad usage or bad input: exit code 2, nothing changed.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// quietRedis drops the Redis client's internal log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// app holds what every command shares: its streams and environment.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	logFormat string
	logLevel  string
}

// Main runs wxacode with args (without the program name) and returns the
// exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	// The Redis client's own log lines (dial retries) would repeat, with
	// another format, what the commands report as errors.
	redis.SetLogger(quietRedis{})
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "wxacode: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFail
}

// isCobraUsage recognises the errors cobra returns for unknown commands
// and wrong argument counts, which it does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "received ", "unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "wxacode",
		Short: "Pre-generate WeChat Mini Program codes in bulk",
		Long: `wxacode pre-generates WeChat Mini Program codes (interface B,
wxacode.getUnlimited) in bulk. A producer enqueues a campaign of scenes into
Redis; workers on any number of hosts call WeChat under one shared ceiling
(5000 calls a minute by default) and store each image in S3-compatible
storage or a local folder; status, export, retry and cancel steer campaigns.

Every setting is a flag with an environment variable behind it; the flag wins.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", a.getenv("LOG_FORMAT"), "log format, json or console (env LOG_FORMAT; default console when stderr is a terminal)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", or(a.getenv("LOG_LEVEL"), "info"), "log level: debug, info, warn, error (env LOG_LEVEL)")
	// LOG_FORMAT and LOG_LEVEL are checked for every command, also those
	// that log nothing, so that a typo is bad usage wherever it is made.
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		_, err := a.logger()
		return err
	}
	root.CompletionOptions.DisableDefaultCmd = true
	for _, add := range commands {
		root.AddCommand(add(a))
	}
	return root
}

// commands are the subcommands; each file adds its own in an init function.
var commands []func(*app) *cobra.Command

// logger builds the zerolog logger of LOG_FORMAT and LOG_LEVEL.
func (a *app) logger() (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(a.logLevel))
	if err != nil || a.logLevel == "" {
		return zerolog.Nop(), usagef("--log-level/LOG_LEVEL %q: want debug, info, warn or error", a.logLevel)
	}
	var w io.Writer = a.stderr
	switch a.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: a.stderr, TimeFormat: "15:04:05.000"}
	case "":
		if isTerminal(a.stderr) {
			w = zerolog.ConsoleWriter{Out: a.stderr, TimeFormat: "15:04:05.000"}
		}
	default:
		return zerolog.Nop(), usagef("--log-format/LOG_FORMAT %q: want json or console", a.logFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// or returns the first non-empty string.
func or(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
