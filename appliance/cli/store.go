package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
)

func storeCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "move the store between databases",
		Subcommands: []*cli.Command{{
			Name:  "migrate",
			Usage: "copy a SQLite store into an empty PostgreSQL database, whole or not at all, and check every table's count",
			Description: "Stop the appliance first: the copy holds its data directory's lock. Then set\n" +
				"store.driver: postgres and store.dsn_file in the configuration, and start it.\n" +
				"The SQLite file is left as it was. The CA's keys stay in data_dir/ca.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "from", Usage: "`sqlite:PATH` of the database file (data_dir/nmos-certs.db)", Required: true},
				&cli.StringFlag{Name: "to", Usage: "`postgres:DSN`; the DSN, with its password, shows in the process list: prefer --to-dsn-file"},
				&cli.StringFlag{Name: "to-dsn-file", Usage: "`FILE` holding the DSN (as store.dsn_file)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return usageError("store migrate takes no arguments: --from sqlite:PATH --to postgres:DSN")
				}
				path, ok := strings.CutPrefix(c.String("from"), "sqlite:")
				if !ok || path == "" {
					return usageError("--from %q: want sqlite:PATH", c.String("from"))
				}
				dsn, err := migrateDSN(c)
				if err != nil {
					return err
				}
				counts, err := app.MigrateStore(c.Context, path, dsn)
				if err != nil {
					return err
				}
				names := make([]string, 0, len(counts))
				for n := range counts {
					names = append(names, n)
				}
				slices.Sort(names)
				for _, n := range names {
					fmt.Fprintf(c.App.Writer, "%-18s %d\n", n, counts[n])
				}
				fmt.Fprintln(c.App.Writer, "copied; every table's count matches. Now set store.driver: postgres and store.dsn_file, and start the appliance.")
				return nil
			},
		}},
	}
}

// migrateDSN is --to postgres:DSN, or the content of --to-dsn-file.
func migrateDSN(c *cli.Context) (string, error) {
	to, file := c.String("to"), c.String("to-dsn-file")
	if (to == "") == (file == "") {
		return "", usageError("give the PostgreSQL database with --to postgres:DSN or --to-dsn-file FILE (one of them)")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	dsn, ok := strings.CutPrefix(to, "postgres:")
	if !ok || dsn == "" {
		return "", usageError("--to: want postgres:DSN (for example postgres:postgres://nmos_certs@db.example.test/nmos_certs?sslmode=verify-full)")
	}
	return dsn, nil
}
