package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write the database (a consistent copy, while the appliance runs) and every key to one file, mode 0600",
		Description: "The file holds the CA's private keys in clear: keep it as the keys are kept.\n" +
			"Restore it with 'nmos-certs restore --in FILE'.",
		Flags: []cli.Flag{configFlag,
			&cli.StringFlag{Name: "out", Usage: "backup `FILE` to create; never overwritten", Required: true},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("backup takes no arguments: name the file with --out")
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			info, err := app.Backup(c.Context, cfg, c.String("out"))
			if err != nil {
				return err
			}
			audit(c.Context, c, "backup", c.String("out"), fmt.Sprintf("%d generations, %d certificates, %d key and certificate files", info.Generations, info.Certificates, info.Files))
			if info.KeysOnly {
				fmt.Fprintf(c.App.Writer, "wrote %s: the CA's %d key files (it holds private keys: keep it as the keys are kept). The store is PostgreSQL's: back the database up with its own tools (pg_dump, replication). 'nmos-certs restore' puts the keys in the data directory of another appliance sharing the database.\n",
					c.String("out"), info.Files)
				return nil
			}
			fmt.Fprintf(c.App.Writer, "wrote %s: %d CA generations, %d certificates, %d key and certificate files (it holds private keys: keep it as the keys are kept)\n",
				c.String("out"), info.Generations, info.Certificates, info.Files)
			return nil
		},
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "make the data directory from a backup; refused over a data directory that holds a CA unless --force",
		Description: "The backup is unpacked beside data_dir and opened (every CA key must match its\n" +
			"certificate) before it takes data_dir's place. With --force an existing data_dir is\n" +
			"moved aside to <data_dir>.replaced-<time>, never deleted. The appliance must be stopped.",
		Flags: []cli.Flag{configFlag,
			&cli.StringFlag{Name: "in", Usage: "backup `FILE` made by 'nmos-certs backup'", Required: true},
			&cli.BoolFlag{Name: "force", Usage: "replace a data directory that holds a CA (it is moved aside)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("restore takes no arguments: name the file with --in")
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			info, moved, err := app.Restore(c.Context, cfg, c.String("in"), c.Bool("force"))
			if err != nil {
				return err
			}
			detail := fmt.Sprintf("%d generations, %d certificates", info.Generations, info.Certificates)
			if moved != "" {
				detail += "; the data directory it replaced is " + moved
			}
			audit(c.Context, c, "restore", c.String("in"), detail)
			fmt.Fprintf(c.App.Writer, "restored %s into %s: %d CA generations, %d certificates\n", c.String("in"), cfg.DataDir, info.Generations, info.Certificates)
			if moved != "" {
				fmt.Fprintf(c.App.Writer, "the data directory it replaced was moved to %s\n", moved)
			}
			fmt.Fprintf(c.App.Writer, "CRL numbers moved %d ahead, past any published since the backup; certificates issued or revoked since the backup are not in it: revoke again what was revoked since\n", app.CRLNumberJump)
			return nil
		},
	}
}

// audit records an operator action of the CLI in the store's audit
// trail. A failure to record it is said, not fatal: the action is done.
func audit(ctx context.Context, c *cli.Context, action, target, detail string) {
	cfg, err := loadConfig(c)
	if err == nil {
		var st store.Store
		if _, st, err = app.Open(ctx, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), time.Now, false); err == nil {
			err = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: action, Target: target, Detail: detail})
			st.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "nmos-certs: warning: the audit trail did not record the %s: %v\n", action, err)
	}
}
