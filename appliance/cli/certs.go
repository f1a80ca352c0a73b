package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

func operator() string {
	if u, err := user.Current(); err == nil {
		return "operator " + u.Username + " (cli)"
	}
	return "operator (cli)"
}

// parseSerial accepts hex serials with or without colons or 0x.
func parseSerial(s string) (*big.Int, error) {
	n, err := store.ParseSerial(s)
	if err != nil {
		return nil, usageError("%q is not a certificate serial (hex, as 'certs list' shows it)", s)
	}
	return n, nil
}

// readCSR reads a PEM or DER PKCS#10 request.
func readCSR(path string) (*x509.CertificateRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	der := data
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%s: PEM block is %q, want CERTIFICATE REQUEST", path, b.Type)
		}
		der = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#10 certificate request: %v", path, err)
	}
	return csr, nil
}

func certsCommand() *cli.Command {
	return &cli.Command{
		Name:  "certs",
		Usage: "issue, list, show and revoke certificates",
		Subcommands: []*cli.Command{
			{
				Name:  "issue",
				Usage: "sign a CSR (PEM or DER) for a device that cannot use EST; writes the certificate and its intermediate as PEM",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "csr", Usage: "certificate request `FILE`", Required: true},
					&cli.StringFlag{Name: "out", Usage: "output `FILE` (- for standard output); never overwritten", Required: true},
					&cli.BoolFlag{Name: "allow-reserved", Usage: "certify a reserved name (the appliance's hostname, the zone apex, ca.reserved_names, ...)"},
					&cli.StringFlag{Name: "holder", Value: "operator", Usage: "the `IDENTITY` the certificate's names are bound to (ca.name_binding)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageError("certs issue takes no arguments: give the request with --csr FILE")
					}
					csr, err := readCSR(c.String("csr"))
					if err != nil {
						return err
					}
					holder := strings.TrimSpace(c.String("holder"))
					if holder == "" {
						return usageError("--holder must not be empty")
					}
					// The output is made sure of before anything is signed:
					// a certificate that cannot be written would be issued
					// and recorded for nothing.
					out, err := reserveOut(c.String("out"))
					if err != nil {
						return err
					}
					written := false
					defer func() {
						if !written {
							out.discard()
						}
					}()
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						cert, err := a.Issue(ctx, csr, policy.Requester{Identity: operator(), Holder: holder, AllowReserved: c.Bool("allow-reserved")})
						// The running appliance counts it too (its metrics
						// follow the store's change feed).
						var ref *policy.Refusal
						switch {
						case err == nil:
							_, hier, _ := policy.KeyType(cert.PublicKey)
							_ = st.AddEvent(ctx, store.EventIssued, hier+"/"+ca.ProfileLeaf, time.Now())
						case errors.As(err, &ref):
							_ = st.AddEvent(ctx, store.EventRefused, ref.Code, time.Now())
						}
						if err != nil {
							return fmt.Errorf("not issued: %w", err)
						}
						chain := a.ChainFor(cert)
						if len(chain) > 0 {
							chain = chain[:len(chain)-1]
						}
						if err := out.write(ca.PEM(append([]*x509.Certificate{cert}, chain...)...)); err != nil {
							return fmt.Errorf("certificate %s was issued and recorded, but writing it failed: %w (get it with 'certs show --pem')", store.SerialKey(cert.SerialNumber), err)
						}
						written = true
						_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "certificate_issued",
							Target: store.SerialKey(cert.SerialNumber), Detail: fmt.Sprintf("names %s, holder %s, reserved names allowed: %v", strings.Join(cert.DNSNames, ", "), holder, c.Bool("allow-reserved"))})
						fmt.Fprintf(c.App.ErrWriter, "issued %s for %s, valid until %s\n", store.SerialKey(cert.SerialNumber),
							strings.Join(cert.DNSNames, ", "), cert.NotAfter.UTC().Format(time.RFC3339))
						return nil
					})
				},
			},
			{
				Name:  "list",
				Usage: "list issued certificates, newest first",
				Flags: []cli.Flag{configFlag,
					&cli.BoolFlag{Name: "revoked", Usage: "only revoked certificates"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most `N` rows (0: all)"},
				},
				Action: func(c *cli.Context) error {
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						opt := store.ListOptions{Limit: c.Int("limit")}
						if c.Bool("revoked") {
							t := true
							opt.Revoked = &t
						}
						certs, err := st.ListCertificates(ctx, opt)
						if err != nil {
							return err
						}
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "SERIAL\tSTATUS\tISSUER\tKEY\tNOT AFTER\tNAMES\tIDENTITY")
						for _, x := range certs {
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", store.SerialKey(x.Serial), status(x), x.IssuerID, x.KeyType,
								x.NotAfter.Format(time.DateOnly), strings.Join(x.SANs, ","), x.Identity)
						}
						return tw.Flush()
					})
				},
			},
			{
				Name:      "show",
				Usage:     "show one certificate",
				ArgsUsage: "SERIAL",
				Flags:     []cli.Flag{configFlag, &cli.BoolFlag{Name: "pem", Usage: "print only the certificate as PEM"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("certs show takes one SERIAL")
					}
					serial, err := parseSerial(c.Args().First())
					if err != nil {
						return err
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						x, err := st.Certificate(ctx, serial)
						if errors.Is(err, store.ErrNotFound) {
							return fmt.Errorf("no certificate with serial %s", store.SerialKey(serial))
						}
						if err != nil {
							return err
						}
						w := c.App.Writer
						if !c.Bool("pem") {
							fmt.Fprintf(w, "Serial:     %s\nStatus:     %s\nSubject:    %s\nNames:      %s\nKey:        %s\nIssuer:     %s\nNot before: %s\nNot after:  %s\nIssued at:  %s\nIdentity:   %s\nProfile:    %s\n",
								store.SerialKey(x.Serial), status(x), x.Subject, strings.Join(x.SANs, ", "), x.KeyType, x.IssuerID,
								x.NotBefore.Format(time.RFC3339), x.NotAfter.Format(time.RFC3339), x.IssuedAt.Format(time.RFC3339), x.Identity, x.Profile)
							if x.Revoked {
								name, _ := ca.ReasonName(x.Reason)
								fmt.Fprintf(w, "Revoked at: %s (%s)\n", x.RevokedAt.Format(time.RFC3339), name)
							}
						}
						_, err = w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.DER}))
						return err
					})
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a certificate, or every valid certificate of a CA generation (--issuer); OCSP and the CRL reflect it within seconds",
				ArgsUsage: "SERIAL | --issuer GENERATION",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "reason", Value: "unspecified", Usage: "RFC 5280 `REASON`: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise"},
					&cli.StringFlag{Name: "issuer", Usage: "revoke every valid certificate issued by CA `GENERATION` (after a compromised intermediate's rollover)"},
				},
				Action: func(c *cli.Context) error {
					if gen := c.String("issuer"); gen != "" {
						if c.NArg() != 0 {
							return usageError("certs revoke takes a SERIAL or --issuer, not both")
						}
						return revokeIssuer(c, gen)
					}
					if c.NArg() != 1 {
						return usageError("certs revoke takes one SERIAL")
					}
					serial, err := parseSerial(c.Args().First())
					if err != nil {
						return err
					}
					reason, err := ca.ParseReason(c.String("reason"))
					if err != nil {
						return usageError("%v", err)
					}
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
						name, _ := ca.ReasonName(reason)
						// The record commits with the revocation.
						ctx = store.WithAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "certificate_revoked",
							Detail: "reason " + name})
						x, err := a.Revoke(ctx, serial, reason)
						switch {
						case errors.Is(err, store.ErrNotFound):
							return fmt.Errorf("no certificate with serial %s", store.SerialKey(serial))
						case errors.Is(err, store.ErrAlreadyRevoked):
							return fmt.Errorf("certificate %s was already revoked at %s", store.SerialKey(serial), x.RevokedAt.Format(time.RFC3339))
						case err != nil:
							return err
						}
						fmt.Fprintf(c.App.Writer, "revoked %s (%s): %s\n", store.SerialKey(serial), name, strings.Join(x.SANs, ", "))
						return nil
					})
				},
			},
		},
	}
}

func status(c *store.Certificate) string {
	switch {
	case c.Revoked:
		return "revoked"
	case time.Now().After(c.NotAfter):
		return "expired"
	}
	return "valid"
}

// revokeIssuer revokes every unrevoked, unexpired certificate that the
// CA generation gen issued.
func revokeIssuer(c *cli.Context, gen string) error {
	reason, err := ca.ParseReason(c.String("reason"))
	if err != nil {
		return usageError("%v", err)
	}
	name, _ := ca.ReasonName(reason)
	return withCA(c, false, func(ctx context.Context, a *ca.Authority, st store.Store) error {
		if _, ok := a.CACertificate(gen); !ok {
			return fmt.Errorf("no CA generation %q (see 'nmos-certs ca status')", gen)
		}
		valid := false
		certs, err := st.ListCertificates(ctx, store.ListOptions{IssuerID: gen, Revoked: &valid})
		if err != nil {
			return err
		}
		n := 0
		for _, x := range certs {
			if !time.Now().Before(x.NotAfter) {
				continue
			}
			actx := store.WithAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "certificate_revoked",
				Detail: fmt.Sprintf("reason %s; every valid certificate of %s", name, gen)})
			if _, err := a.Revoke(actx, x.Serial, reason); err != nil && !errors.Is(err, store.ErrAlreadyRevoked) {
				return fmt.Errorf("revoke %s: %w (%d revoked before it)", store.SerialKey(x.Serial), err, n)
			}
			n++
		}
		_ = st.AddAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "certificates_revoked", Target: gen,
			Detail: fmt.Sprintf("every valid certificate of %s, %d, reason %s", gen, n, name)})
		fmt.Fprintf(c.App.Writer, "revoked %d certificates of %s (%s)\n", n, gen, name)
		return nil
	})
}

// denyMany denies the waiting requests that match --all-from and
// --older-than (both when both are given).
func denyMany(c *cli.Context) error {
	from := strings.TrimSpace(c.String("all-from"))
	if from != "" {
		ip := net.ParseIP(from)
		if ip == nil {
			return usageError("--all-from %q is not an IP address", from)
		}
		from = ip.String()
	}
	var before time.Time
	if s := c.String("older-than"); s != "" {
		d, err := config.ParseDuration(s)
		if err != nil || d <= 0 {
			return usageError("--older-than %q is not a duration (30m, 12h, 7d)", s)
		}
		before = time.Now().Add(-d.D())
	}
	return withCA(c, false, func(ctx context.Context, a *ca.Authority, s store.Store) error {
		ps, err := s.ListPending(ctx, store.PendingWaiting)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range ps {
			if from != "" && p.Remote != from {
				continue
			}
			if !before.IsZero() && !p.CreatedAt.Before(before) {
				continue
			}
			actx := store.WithAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "request_denied",
				Detail: fmt.Sprintf("bulk denial (all from %q, older than %q)", c.String("all-from"), c.String("older-than"))})
			if _, err := s.DecidePending(actx, p.ID, store.PendingDenied, operator(), time.Now()); err != nil {
				if errors.Is(err, store.ErrConflict) {
					continue // decided or expired meanwhile
				}
				return err
			}
			n++
		}
		fmt.Fprintf(c.App.Writer, "denied %d waiting requests\n", n)
		return nil
	})
}

func requestsCommand() *cli.Command {
	decide := func(st store.PendingState) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("takes one request ID")
			}
			return withCA(c, false, func(ctx context.Context, a *ca.Authority, s store.Store) error {
				ctx = store.WithAudit(ctx, &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: "request_" + string(st)})
				p, err := s.DecidePending(ctx, c.Args().First(), st, operator(), time.Now())
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no request %q", c.Args().First())
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s %s: %s (%s); the device gets its answer at its next retry\n", p.ID, p.State, p.Subject, strings.Join(p.SANs, ", "))
				return nil
			})
		}
	}
	return &cli.Command{
		Name:  "requests",
		Usage: "decide enrollment requests waiting for manual approval",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list requests (waiting ones unless --all)",
				Flags: []cli.Flag{configFlag, &cli.BoolFlag{Name: "all", Usage: "every request, decided or not"}},
				Action: func(c *cli.Context) error {
					return withCA(c, false, func(ctx context.Context, a *ca.Authority, s store.Store) error {
						state := store.PendingWaiting
						if c.Bool("all") {
							state = ""
						}
						ps, err := s.ListPending(ctx, state)
						if err != nil {
							return err
						}
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "ID\tSTATE\tOPERATION\tRECEIVED\tEXPIRES\tSUBJECT\tNAMES\tCLIENT")
						for _, p := range ps {
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.State, p.Operation, p.CreatedAt.Format(time.RFC3339),
								p.ExpiresAt.Format(time.RFC3339), p.Subject, strings.Join(p.SANs, ","), p.Client)
						}
						return tw.Flush()
					})
				},
			},
			{Name: "approve", Usage: "approve a waiting request", ArgsUsage: "ID", Flags: []cli.Flag{configFlag}, Action: decide(store.PendingApproved)},
			{
				Name:      "deny",
				Usage:     "deny a waiting request, or every waiting request from an address or older than a duration",
				ArgsUsage: "ID | --all-from ADDR | --older-than D",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "all-from", Usage: "deny every waiting request from client IP `ADDR`"},
					&cli.StringFlag{Name: "older-than", Usage: "deny every waiting request received more than `D` ago (30m, 12h, 7d)"},
				},
				Action: func(c *cli.Context) error {
					if c.String("all-from") == "" && c.String("older-than") == "" {
						return decide(store.PendingDenied)(c)
					}
					if c.NArg() != 0 {
						return usageError("requests deny takes an ID or --all-from/--older-than, not both")
					}
					return denyMany(c)
				},
			},
		},
	}
}
