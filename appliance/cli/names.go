package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

func namesCommand() *cli.Command {
	return &cli.Command{
		Name:  "names",
		Usage: "list and release the names bound to device identities (ca.name_binding)",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list name bindings: name, holder, since, and when the name becomes free",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "name", Usage: "only the binding of host `NAME`"},
					&cli.StringFlag{Name: "identity", Usage: "only bindings whose holder contains `TEXT`"},
					&cli.IntFlag{Name: "limit", Value: 1000, Usage: "at most `N` rows (0: all)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageError("names list takes no arguments (use --name or --identity)")
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						f := store.BindingFilter{Holder: c.String("identity"), Limit: c.Int("limit")}
						if n := c.String("name"); n != "" {
							f.Name, _ = policy.NormalizeName(n)
						}
						bs, err := st.NameBindings(ctx, f)
						if err != nil {
							return err
						}
						cfg, err := loadConfig(c)
						if err != nil {
							return err
						}
						grace := cfg.CA.NameBindingGrace.D()
						now := time.Now()
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "NAME\tHOLDER\tSINCE\tCERTIFICATES UNTIL\tFREE AFTER\tLAST SERIAL")
						for _, b := range bs {
							free := b.Expires.Add(grace)
							freeText := free.Format(time.RFC3339)
							if free.Before(now) {
								freeText += " (lapsed)"
							}
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.Holder, b.Since.Format(time.RFC3339),
								b.Expires.Format(time.RFC3339), freeText, store.SerialKey(b.Serial))
						}
						return tw.Flush()
					})
				},
			},
			{
				Name:      "release",
				Usage:     "release a name from its holder, so that another identity may be certified for it (audited)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("names release takes one NAME")
					}
					name, ok := policy.NormalizeName(strings.TrimSpace(c.Args().First()))
					if !ok || name == "" {
						return usageError("%q is not a DNS name", c.Args().First())
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						b, err := st.ReleaseName(ctx, name, operator(), "cli", time.Now())
						if errors.Is(err, store.ErrNotFound) {
							return fmt.Errorf("%s is not bound to any identity", name)
						}
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "released %s from %s; its certificates stay valid until revoked or expired (%s)\n",
							name, b.Holder, b.Expires.Format(time.RFC3339))
						return nil
					})
				},
			},
		},
	}
}
