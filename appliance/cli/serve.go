package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the appliance",
		Description: "Runs every service of the configuration. Without --config it serves the embedded\n" +
			"default on loopback high ports with its data in ./nmos-certs-data and prints how to try it.\n" +
			"SIGINT or SIGTERM stop it; SIGHUP reloads the configuration file (EST, DNS-SD and\n" +
			"log level settings apply at once; listeners, data_dir and the CA need a restart).",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			// The appliance's heap is small (tens of MB) and the machine's
			// memory large; collecting less often saves CPU on every
			// enrollment. GOGC in the environment still wins.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(400)
			}
			level := new(slog.LevelVar)
			_ = level.UnmarshalText([]byte(cfg.Log.Level))
			logger := newLogger(cfg, c.App.ErrWriter, level)
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.New(ctx, cfg, app.Options{
				Logger:   logger,
				LogLevel: level,
				Ready: func(a *app.App) {
					if c.String("config") == "" {
						printTour(c.App.Writer, cfg, a)
					}
				},
			})
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						reload(ctx, c.String("config"), a, logger)
					}
				}
			}()
			return a.Run(ctx)
		},
	}
}

// reload reads the configuration file again and applies it; any error
// keeps the running configuration.
func reload(ctx context.Context, path string, a *app.App, logger *slog.Logger) {
	if path == "" {
		logger.Info("SIGHUP ignored: the embedded default configuration has nothing to reload")
		return
	}
	_ = a.ReloadFile(ctx, path) // logs its outcome
}

// printTour tells a newcomer running the embedded default what listens
// where and how to try it.
func printTour(w io.Writer, cfg *config.Config, a *app.App) {
	addr := func(name string) string {
		if x := a.Addr(name); x != nil {
			return x.String()
		}
		return "(off)"
	}
	fmt.Fprintf(w, `
nmos-certs %s is serving the embedded default configuration (data in %s).

  EST      https://%s/.well-known/est/   (TLS name %s)
  DNS-SD   %s udp+tcp, zone %s
  OCSP/CRL http://%s/ocsp  http://%s/crl/
  metrics  http://%s/metrics
  UI       https://%s/   (sign-in: nmos-certs users add NAME --role admin)

Try it:
  curl -s http://%s/ca/ecdsa-root-1.pem
  curl -s http://%s/metrics | grep nmos_certs_
  nmos-certs ca status
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout dev.key \
      -subj /CN=node1.%s -addext subjectAltName=DNS:node1.%s -out dev.csr
  nmos-certs certs issue --csr dev.csr --out dev.crt

`, app.Version, cfg.DataDir,
		addr("est"), cfg.Hostname, cfg.Listen.DNS, cfg.Domain, addr("http"), addr("http"), addr("metrics"), addr("web"),
		addr("http"), addr("metrics"), cfg.Domain, cfg.Domain)
}
