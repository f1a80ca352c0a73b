package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print an example configuration or check one",
		Subcommands: []*cli.Command{
			{
				Name:  "example",
				Usage: "print a fully commented example configuration",
				Action: func(c *cli.Context) error {
					_, err := c.App.Writer.Write(config.Example)
					return err
				},
			},
			{
				Name:      "check",
				Usage:     "validate a configuration file",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("config check takes one FILE")
					}
					cfg, err := config.LoadFile(c.Args().First())
					if err != nil {
						return err
					}
					if err := app.CheckConfig(c.Context, cfg); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s: ok\n", c.Args().First())
					return nil
				},
			},
		},
	}
}
