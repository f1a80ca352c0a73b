package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// withCA loads the configuration and opens the store and authority. The
// store is shared safely with a running appliance, which picks up
// changes from its change feed within seconds.
func withCA(c *cli.Context, create bool, fn func(ctx context.Context, a *ca.Authority, st store.Store) error) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if create {
		logger = newLogger(cfg, c.App.ErrWriter, nil)
	}
	a, st, err := app.Open(c.Context, cfg, logger, prometheus.NewRegistry(), time.Now, create)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(c.Context, a, st)
}

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "create or inspect the certificate authority",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create the ECDSA and RSA hierarchies (or import them as configured); does nothing if they exist",
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					return withCA(c, true, func(ctx context.Context, a *ca.Authority, _ store.Store) error {
						return printStatus(c.App.Writer, a)
					})
				},
			},
			{
				Name:  "status",
				Usage: "list every CA certificate with algorithm, fingerprint, validity and state",
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, _ store.Store) error {
						return printStatus(c.App.Writer, a)
					})
				},
			},
		},
	}
}

func keyDesc(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return c.PublicKeyAlgorithm.String()
}

func printStatus(w io.Writer, a *ca.Authority) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GENERATION\tROLE\tSTATE\tKEY\tKEY HELD\tNOT BEFORE\tNOT AFTER\tSHA-256 FINGERPRINT\tSUBJECT")
	for _, g := range a.Generations() {
		held := "yes"
		if !g.KeyHeld {
			held = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Role, g.State, keyDesc(g.Cert), held,
			g.Cert.NotBefore.UTC().Format(time.DateOnly), g.Cert.NotAfter.UTC().Format(time.DateOnly),
			colonHex(g.Fingerprint), g.Cert.Subject.CommonName)
	}
	return tw.Flush()
}

func colonHex(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToUpper(h[i : i+2]))
	}
	return b.String()
}

// outFile is an output file created, empty, before the work that fills
// it, so that a path that cannot be written is found before anything is
// signed.
type outFile struct {
	path string
	f    *os.File // nil for standard output
}

// reserveOut creates path exclusively ("-": standard output).
func reserveOut(path string) (*outFile, error) {
	if path == "-" {
		return &outFile{path: path}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%s exists: not overwriting it, and nothing was issued", path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot write the output: %w; nothing was issued", err)
	}
	return &outFile{path: path, f: f}, nil
}

func (o *outFile) write(data []byte) error {
	if o.f == nil {
		_, err := os.Stdout.Write(data)
		return err
	}
	_, err := o.f.Write(data)
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// discard removes the file reserved, when nothing was written to it.
func (o *outFile) discard() {
	if o.f != nil {
		o.f.Close()
		os.Remove(o.path)
	}
}
