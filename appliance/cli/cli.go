// Package cli is the nmos-certs command line. It is the only place that
// calls os.Exit.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
)

// Main runs the command line and exits.
func Main() {
	os.Exit(Run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// Run runs the command line with args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := New(stdout, stderr)
	if err := a.RunContext(ctx, flagsFirst(a, args)); err != nil {
		msg := err.Error()
		var ce cli.ExitCoder
		if errors.As(err, &ce) && msg == "" {
			return ce.ExitCode()
		}
		for _, line := range strings.Split(strings.TrimSpace(msg), "\n") {
			fmt.Fprintf(stderr, "nmos-certs: %s\n", line)
		}
		if errors.As(err, &ce) {
			return ce.ExitCode()
		}
		return 1
	}
	return 0
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "configuration `FILE` (default: the embedded default: loopback, high ports, data in ./nmos-certs-data)",
	EnvVars: []string{"NMOS_CERTS_CONFIG"},
}

// New builds the command tree.
func New(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "nmos-certs",
		Usage:     "certificate appliance for NMOS networks (AMWA BCP-003-03): DNS-SD, EST, CA, OCSP and CRLs",
		Version:   app.Version,
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by Run.
		ExitErrHandler:       func(*cli.Context, error) {},
		HideVersion:          true,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			serveCommand(),
			configCommand(),
			caCommand(),
			certsCommand(),
			requestsCommand(),
			namesCommand(),
			backupCommand(),
			restoreCommand(),
			storeCommand(),
			usersCommand(),
			setupCommand(),
			bannerCommand(),
			completionCommand(),
			manCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "nmos-certs %s\n", app.Version)
					return nil
				},
			},
		},
	}
}

// loadConfig loads --config, or the embedded default.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := c.String("config")
	if path == "" {
		return config.Load(nil, config.EmbeddedSource)
	}
	cfg, err := config.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer, level slog.Leveler) *slog.Logger {
	if level == nil {
		var lvl slog.Level
		_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
		level = lvl
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// flagsFirst moves the options written after a command's arguments in
// front of them, so that "certs revoke SERIAL --reason keyCompromise"
// means what it says: urfave/cli stops reading options at the first
// argument. Everything after "--" stays an argument.
func flagsFirst(a *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds := a.Commands
	var cmd *cli.Command
	i := 1
	for ; i < len(args); i++ {
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(args[i]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		cmd = next
		out = append(out, args[i])
		cmds = cmd.Subcommands
	}
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, rest []string
	for ; i < len(args); i++ {
		s := args[i]
		if s == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if len(s) < 2 || s[0] != '-' {
			rest = append(rest, s)
			continue
		}
		flags = append(flags, s)
		name := strings.TrimLeft(s, "-")
		if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(append(out, flags...), rest...)
}

func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
