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
	if err := a.RunContext(ctx, args); err != nil {
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
		return config.Load(nil, "embedded default")
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

func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
