package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
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
			{
				Name:  "sign-intermediate",
				Usage: "the offline root's step of an intermediate rollover: certify a request made by 'ca rollover intermediate --csr-out' with the root key (needs no configuration or database)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "root-cert", Usage: "the root's certificate, PEM `FILE`", Required: true},
					&cli.StringFlag{Name: "root-key", Usage: "the root's private key, PEM `FILE` (mode 0600; encrypted with --passphrase-file)", Required: true},
					&cli.StringFlag{Name: "passphrase-file", Usage: "`FILE` whose first line is the passphrase of an encrypted --root-key (from ca export-root-key)"},
					&cli.StringFlag{Name: "csr", Usage: "the intermediate's request, PEM `FILE`", Required: true},
					&cli.StringFlag{Name: "out", Usage: "the certificate, PEM `FILE`; never overwritten", Required: true},
					&cli.StringFlag{Name: "lifetime", Value: "1825d", Usage: "validity, `D` (not past the root's)"},
					&cli.StringFlag{Name: "base-url", Usage: "the appliance's plain-HTTP `URL` (ca.base_url): the certificate names the root's CRL and certificate there"},
					&cli.StringFlag{Name: "root-id", Usage: "the root's generation `ID` as 'ca status' shows it (with --base-url)"},
				},
				Action: func(c *cli.Context) error {
					lifetime, err := config.ParseDuration(c.String("lifetime"))
					if err != nil || lifetime <= 0 {
						return usageError("--lifetime %q is not a duration (1825d, 43800h)", c.String("lifetime"))
					}
					if (c.String("base-url") == "") != (c.String("root-id") == "") {
						return usageError("--base-url and --root-id go together")
					}
					root, key, err := readRoot(c)
					if err != nil {
						return err
					}
					req, err := os.ReadFile(c.String("csr"))
					if err != nil {
						return err
					}
					out, err := reserveOut(c.String("out"))
					if err != nil {
						return err
					}
					cert, err := ca.SignIntermediate(req, root, key, lifetime.D(), c.String("base-url"), c.String("root-id"), time.Now())
					if err != nil {
						out.discard()
						return fmt.Errorf("not signed: %w", err)
					}
					if err := out.write(ca.PEM(cert)); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "signed %q, valid until %s: take %s to the appliance and run 'nmos-certs ca import-intermediate --in %s'\n",
						cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339), c.String("out"), filepath.Base(c.String("out")))
					return nil
				},
			},
			{
				Name:  "import-intermediate",
				Usage: "the last step of an offline-root intermediate rollover: the certificate 'ca sign-intermediate' made becomes the active intermediate",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "in", Usage: "the certificate, PEM `FILE`", Required: true},
					&cli.StringFlag{Name: "reason", Value: "superseded", Usage: "RFC 5280 `REASON`: superseded, or keyCompromise, cACompromise (the old intermediate is revoked, for the root's next CRL)"},
				},
				Action: func(c *cli.Context) error {
					certs, err := ca.ReadCertificates(c.String("in"))
					if err != nil {
						return err
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						reason, err := ca.ParseReason(c.String("reason"))
						if err != nil {
							return usageError("%v", err)
						}
						reasonName, _ := ca.ReasonName(reason)
						r, err := a.ImportIntermediate(ctx, certs[0], reasonName)
						if err != nil {
							return err
						}
						_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "intermediate_imported", Target: r.New.ID,
							Detail: fmt.Sprintf("%s replaces %s; new SHA-256 %s", r.New.ID, r.Old.ID, r.New.Fingerprint)})
						fmt.Fprintf(c.App.Writer, "%s is active (SHA-256 %s, valid until %s); %s is retiring\n",
							r.New.ID, colonHex(r.New.Fingerprint), r.New.Cert.NotAfter.UTC().Format(time.RFC3339), r.Old.ID)
						return nil
					})
				},
			},
			{
				Name:  "export-root-key",
				Usage: "take a root offline: sign its CRL one last time here, write its key encrypted under a passphrase, then remove it from the appliance",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "hierarchy", Usage: "`ecdsa` or rsa", Required: true},
					&cli.StringFlag{Name: "out", Usage: "the encrypted key, PEM `FILE`; never overwritten", Required: true},
					&cli.StringFlag{Name: "passphrase-file", Usage: "`FILE` whose first line is the passphrase (12 characters or more)", Required: true},
					&cli.StringFlag{Name: "crl-validity", Value: "365d", Usage: "validity of the root's last CRL signed here, `D`: sign the next before it ends"},
				},
				Action: func(c *cli.Context) error {
					hier, err := hierarchyFlag(c)
					if err != nil {
						return err
					}
					validity, err := config.ParseDuration(c.String("crl-validity"))
					if err != nil || validity <= 0 {
						return usageError("--crl-validity %q is not a duration (365d)", c.String("crl-validity"))
					}
					pass, err := readPassphrase(c.String("passphrase-file"))
					if err != nil {
						return err
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						g, err := a.ExportRootKey(ctx, hier, c.String("out"), pass, validity.D())
						if err != nil {
							return err
						}
						_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "root_key_exported", Target: g.ID, Detail: "written encrypted to " + c.String("out") + " and removed from the appliance"})
						fmt.Fprintf(c.App.Writer, "the key of %s is in %s (encrypted) and no longer on the appliance; its CRL is valid until %s: sign the next where the key is (ca crl-request, ca sign-crl, ca import-crl)\n",
							g.ID, c.String("out"), time.Now().Add(validity.D()).UTC().Format(time.DateOnly))
						return nil
					})
				},
			},
			{
				Name:  "crl-request",
				Usage: "what an offline root's next CRL must say (the next number and the revoked certificates), for 'ca sign-crl'",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "root", Usage: "the root's generation `ID` (ca status)", Required: true},
					&cli.StringFlag{Name: "out", Usage: "JSON `FILE`; never overwritten", Required: true},
				},
				Action: func(c *cli.Context) error {
					out, err := reserveOut(c.String("out"))
					if err != nil {
						return err
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						if _, ok := a.CACertificate(c.String("root")); !ok {
							out.discard()
							return fmt.Errorf("no CA generation %q", c.String("root"))
						}
						req, err := a.CRLRequest(ctx, c.String("root"))
						if err == nil {
							var b []byte
							if b, err = req.Marshal(); err == nil {
								err = out.write(b)
							}
						}
						if err != nil {
							out.discard()
							return err
						}
						fmt.Fprintf(c.App.Writer, "CRL %d of %s, %d revoked: sign it where the root key is with 'nmos-certs ca sign-crl --request %s'\n",
							req.Number, req.Issuer, len(req.Revoked), filepath.Base(c.String("out")))
						return nil
					})
				},
			},
			{
				Name:  "sign-crl",
				Usage: "the offline root's step: sign the CRL of a 'ca crl-request' file (needs no configuration or database)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "root-cert", Usage: "the root's certificate, PEM `FILE`", Required: true},
					&cli.StringFlag{Name: "root-key", Usage: "the root's private key, PEM `FILE`", Required: true},
					&cli.StringFlag{Name: "passphrase-file", Usage: "`FILE` whose first line is the passphrase of an encrypted --root-key"},
					&cli.StringFlag{Name: "request", Usage: "the request, JSON `FILE`", Required: true},
					&cli.StringFlag{Name: "validity", Value: "365d", Usage: "thisUpdate to nextUpdate, `D`"},
					&cli.StringFlag{Name: "out", Usage: "the CRL, DER `FILE`; never overwritten", Required: true},
				},
				Action: func(c *cli.Context) error {
					validity, err := config.ParseDuration(c.String("validity"))
					if err != nil || validity <= 0 {
						return usageError("--validity %q is not a duration (365d)", c.String("validity"))
					}
					root, key, err := readRoot(c)
					if err != nil {
						return err
					}
					b, err := os.ReadFile(c.String("request"))
					if err != nil {
						return err
					}
					var req ca.CRLRequestDoc
					if err := json.Unmarshal(b, &req); err != nil || req.Number <= 0 {
						return fmt.Errorf("%s is not a CRL request (%v)", c.String("request"), err)
					}
					out, err := reserveOut(c.String("out"))
					if err != nil {
						return err
					}
					crl, err := ca.SignCRL(&req, root, key, validity.D(), time.Now())
					if err != nil {
						out.discard()
						return err
					}
					if err := out.write(crl.Raw); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "CRL %d signed, valid until %s: take it to the appliance and run 'nmos-certs ca import-crl --in %s'\n",
						req.Number, crl.NextUpdate.UTC().Format(time.DateOnly), filepath.Base(c.String("out")))
					return nil
				},
			},
			{
				Name:  "import-crl",
				Usage: "publish a CRL an offline root signed ('ca sign-crl') at the root's CRL URL",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "in", Usage: "the CRL, DER or PEM `FILE`", Required: true},
				},
				Action: func(c *cli.Context) error {
					b, err := os.ReadFile(c.String("in"))
					if err != nil {
						return err
					}
					if blk, _ := pem.Decode(b); blk != nil {
						b = blk.Bytes
					}
					crl, err := x509.ParseRevocationList(b)
					if err != nil {
						return fmt.Errorf("%s is not a CRL: %w", c.String("in"), err)
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						if err := a.ImportCRL(ctx, crl); err != nil {
							return err
						}
						_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "crl_imported", Target: crl.Number.String(), Detail: "valid until " + crl.NextUpdate.UTC().Format(time.RFC3339)})
						fmt.Fprintf(c.App.Writer, "CRL %s published, valid until %s\n", crl.Number, crl.NextUpdate.UTC().Format(time.RFC3339))
						return nil
					})
				},
			},
			{
				Name:      "destroy-key",
				Usage:     "delete the key of a retired CA generation (its certificate stays on record); needs --confirm with the generation again",
				ArgsUsage: "GENERATION",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "confirm", Usage: "the `GENERATION` again, to confirm"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("ca destroy-key takes one GENERATION")
					}
					id := c.Args().First()
					if c.String("confirm") != id {
						return usageError("destroying the key of %s cannot be undone: run again with --confirm %s", id, id)
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						if err := a.DestroyKey(ctx, id); err != nil {
							return err
						}
						_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "ca_key_destroyed", Target: id, Detail: "the key of a retired generation"})
						fmt.Fprintf(c.App.Writer, "the key of %s is destroyed; its certificate stays on record\n", id)
						return nil
					})
				},
			},
			{
				Name:  "rollover",
				Usage: "roll a CA generation over to a new key",
				Subcommands: []*cli.Command{{
					Name:  "intermediate",
					Usage: "make a new intermediate under the active root and make it active; the old one issues nothing new and retires when its last certificate expires",
					Flags: []cli.Flag{configFlag,
						&cli.StringFlag{Name: "hierarchy", Usage: "`ecdsa` or rsa", Required: true},
						&cli.StringFlag{Name: "reason", Value: "superseded", Usage: "RFC 5280 `REASON`: superseded (routine) or keyCompromise, cACompromise (the old intermediate's valid certificates are listed, with the command that revokes them)"},
						&cli.StringFlag{Name: "csr-out", Usage: "with the root key offline: make the new intermediate's key and write its request to `FILE`, for 'ca sign-intermediate' where the root key is"},
					},
					Action: func(c *cli.Context) error {
						hier, err := hierarchyFlag(c)
						if err != nil {
							return err
						}
						if path := c.String("csr-out"); path != "" {
							if c.IsSet("reason") {
								return usageError("with --csr-out, give --reason to 'ca import-intermediate', which makes the rollover")
							}
							out, err := reserveOut(path)
							if err != nil {
								return err
							}
							return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
								req, id, err := a.RequestIntermediate(ctx, hier)
								if err != nil {
									out.discard()
									return err
								}
								if err := out.write(req); err != nil {
									return err
								}
								_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "intermediate_requested", Target: id, Detail: "request for the offline root written to " + path})
								fmt.Fprintf(c.App.Writer, "the key of %s waits in the data directory; sign %s where the root key is:\n"+
									"  nmos-certs ca sign-intermediate --root-cert ROOT.pem --root-key ROOT.key --csr %s --out %s.pem --base-url %s --root-id ROOT-ID\n"+
									"then bring the certificate back: nmos-certs ca import-intermediate --in %s.pem\n", id, path, filepath.Base(path), id, cfgBaseURL(c), id)
								return nil
							})
						}
						reason, err := ca.ParseReason(c.String("reason"))
						if err != nil {
							return usageError("%v", err)
						}
						reasonName, _ := ca.ReasonName(reason)
						return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
							r, err := a.RolloverIntermediate(ctx, hier, reasonName)
							if err != nil {
								return err
							}
							_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "intermediate_rollover", Target: r.New.ID,
								Detail: fmt.Sprintf("%s replaces %s (reason %s); old SHA-256 %s, new SHA-256 %s", r.New.ID, r.Old.ID, reasonName, r.Old.Fingerprint, r.New.Fingerprint)})
							fmt.Fprintf(c.App.Writer, "%s is active (SHA-256 %s, valid until %s); %s is retiring: it issues nothing new and answers for its certificates until the last expires\n",
								r.New.ID, colonHex(r.New.Fingerprint), r.New.Cert.NotAfter.UTC().Format(time.RFC3339), r.Old.ID)
							if reason == 1 || reason == 2 { // keyCompromise, cACompromise
								valid := false
								leaves, err := st.ListCertificates(ctx, store.ListOptions{IssuerID: r.Old.ID, Revoked: &valid})
								if err != nil {
									return err
								}
								n := 0
								for _, l := range leaves {
									if time.Now().Before(l.NotAfter) {
										n++
										fmt.Fprintf(c.App.Writer, "  still valid under %s: %s %s until %s\n", r.Old.ID, store.SerialKey(l.Serial), strings.Join(l.SANs, ","), l.NotAfter.UTC().Format(time.RFC3339))
									}
								}
								fmt.Fprintf(c.App.Writer, "%d certificates of %s are still valid; revoke them all with: nmos-certs certs revoke --issuer %s --reason %s\n", n, r.Old.ID, r.Old.ID, reasonName)
							}
							return nil
						})
					},
				}, {
					Name:  "root",
					Usage: "start a root rollover (RFC 4210 4.4): a new root, the OldWithNew and NewWithOld link certificates and an intermediate under the new root, published at once; the new hierarchy issues after the overlap",
					Flags: []cli.Flag{configFlag,
						&cli.StringFlag{Name: "hierarchy", Usage: "`ecdsa` or rsa", Required: true},
						&cli.StringFlag{Name: "overlap", Usage: "how long the new root is published before it issues, `D` (30d, 0 for at once; default ca.root_rollover_overlap)"},
					},
					Action: func(c *cli.Context) error {
						hier, err := hierarchyFlag(c)
						if err != nil {
							return err
						}
						cfg, err := loadConfig(c)
						if err != nil {
							return err
						}
						overlap := cfg.CA.RootRolloverOverlap.D()
						if s := c.String("overlap"); s != "" {
							d, err := config.ParseDuration(s)
							if err != nil || d < 0 {
								return usageError("--overlap %q is not a duration (30d, 12h, 0)", s)
							}
							overlap = d.D()
						}
						return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
							r, err := a.RolloverRoot(ctx, hier, overlap)
							if err != nil {
								return err
							}
							_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "root_rollover", Target: r.NewRoot.ID,
								Detail: fmt.Sprintf("%s succeeds %s from %s; new SHA-256 %s; links %s, %s; intermediate %s", r.NewRoot.ID, r.OldRoot.ID,
									r.ActiveFrom.UTC().Format(time.RFC3339), r.NewRoot.Fingerprint, r.NewWithOld.ID, r.OldWithNew.ID, r.NewIntermediate.ID)})
							w := c.App.Writer
							fmt.Fprintf(w, "new root %s (SHA-256 %s, valid until %s)\n", r.NewRoot.ID, colonHex(r.NewRoot.Fingerprint), r.NewRoot.Cert.NotAfter.UTC().Format(time.RFC3339))
							fmt.Fprintf(w, "link certificates %s (NewWithOld) and %s (OldWithNew), valid until %s, in /cacerts from now\n",
								r.NewWithOld.ID, r.OldWithNew.ID, r.NewWithOld.Cert.NotAfter.UTC().Format(time.RFC3339))
							if r.NewRoot.State == "active" {
								fmt.Fprintf(w, "%s and its intermediate %s issue from now; %s retires with its last certificate\n", r.NewRoot.ID, r.NewIntermediate.ID, r.OldRoot.ID)
							} else {
								fmt.Fprintf(w, "%s and its intermediate %s issue from %s; until then %s does\n", r.NewRoot.ID, r.NewIntermediate.ID,
									r.ActiveFrom.UTC().Format(time.RFC3339), r.OldRoot.ID)
							}
							return nil
						})
					},
				}},
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

// cfgBaseURL is ca.base_url of --config, for the commands it prints.
func cfgBaseURL(c *cli.Context) string {
	if cfg, err := loadConfig(c); err == nil {
		return cfg.CA.BaseURL
	}
	return "URL"
}

// readPassphrase reads the first line of path.
func readPassphrase(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("%s: no passphrase on its first line", path)
	}
	return []byte(line), nil
}

// readRoot reads --root-cert and --root-key, the key decrypted with
// --passphrase-file.
func readRoot(c *cli.Context) (*x509.Certificate, crypto.Signer, error) {
	roots, err := ca.ReadCertificates(c.String("root-cert"))
	if err != nil {
		return nil, nil, err
	}
	var pass []byte
	if p := c.String("passphrase-file"); p != "" {
		if pass, err = readPassphrase(p); err != nil {
			return nil, nil, err
		}
	}
	key, err := ca.ReadEncryptedKey(c.String("root-key"), pass)
	return roots[0], key, err
}

// hierarchyFlag is --hierarchy, ecdsa or rsa.
func hierarchyFlag(c *cli.Context) (string, error) {
	hier := strings.ToLower(c.String("hierarchy"))
	if hier != ca.ECDSA && hier != ca.RSA {
		return "", usageError("--hierarchy %q: want ecdsa or rsa", c.String("hierarchy"))
	}
	return hier, nil
}
