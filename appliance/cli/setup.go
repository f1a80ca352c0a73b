package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// setupAnswers are what 'setup' asks for; everything else in the file it
// writes is a default an appliance on a facility network wants.
type setupAnswers struct {
	domain, hostname string
	addresses        []string
	roots            []string
	manual           bool
	dataDir          string
}

// yaml is the configuration file for the answers.
func (s setupAnswers) yaml(now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by 'nmos-certs setup' on %s.\n", now.UTC().Format(time.DateOnly))
	b.WriteString("# Every key and its default: nmos-certs config example\n")
	b.WriteString("# Check after editing: nmos-certs config check FILE\n\n")
	fmt.Fprintf(&b, "domain: %s\n", quoteYAML(s.domain))
	fmt.Fprintf(&b, "hostname: %s\n", quoteYAML(s.hostname))
	fmt.Fprintf(&b, "addresses: [%s]\n", joinYAML(s.addresses))
	fmt.Fprintf(&b, "data_dir: %s\n\n", quoteYAML(s.dataDir))
	b.WriteString("listen:\n")
	b.WriteString("  est: \":443\"             # HTTPS, EST under /.well-known/est/, every address\n")
	b.WriteString("  http: \":80\"             # OCSP, CRLs and CA certificates\n")
	b.WriteString("  dns: \":53\"              # unicast DNS-SD, UDP and TCP\n")
	b.WriteString("  metrics: \":9153\"        # Prometheus /metrics\n")
	b.WriteString("  web: \":8444\"            # operator UI with sign-in; loopback only until an account exists (nmos-certs users add)\n\n")
	b.WriteString("est:\n")
	fmt.Fprintf(&b, "  trusted_client_roots: [%s]\n", joinYAML(s.roots))
	fmt.Fprintf(&b, "  manual_approval: %t\n", s.manual)
	return []byte(b.String())
}

func quoteYAML(s string) string { return strconv.Quote(s) }

func joinYAML(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = quoteYAML(s)
	}
	return strings.Join(q, ", ")
}

// hostAddresses lists the machine's global unicast addresses, IPv4 first.
func hostAddresses() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		if ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() {
			out = append(out, ip)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Is4() && !out[j].Is4() })
	s := make([]string, len(out))
	for i, a := range out {
		s[i] = a.String()
	}
	return s
}

// splitList splits a comma- or space-separated answer.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// prompter asks questions on a terminal (or whatever stdin is).
type prompter struct {
	in  *bufio.Reader
	out io.Writer
}

// ask prints the question with its default and returns the answer, or
// the default for an empty line. End of input is an error: a console
// without an operator must not write a half-answered configuration.
func (p *prompter) ask(question, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(p.out, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(p.out, "%s: ", question)
	}
	line, err := p.in.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		fmt.Fprintln(p.out)
		if errors.Is(err, io.EOF) {
			return "", errors.New("setup: input ended before every question was answered; nothing was written")
		}
		return "", err
	}
	if line = strings.TrimSpace(line); line == "" {
		return def, nil
	}
	return line, nil
}

func (p *prompter) yes(question string, def bool) (bool, error) {
	d := "y/N"
	if def {
		d = "Y/n"
	}
	for {
		a, err := p.ask(question+" ("+d+")", "")
		if err != nil {
			return false, err
		}
		switch strings.ToLower(a) {
		case "":
			return def, nil
		case "y", "yes":
			return true, nil
		case "n", "no":
			return false, nil
		}
		fmt.Fprintln(p.out, "  answer y or n")
	}
}

// interview asks every question once, with the answers so far as the
// defaults.
func (p *prompter) interview(s setupAnswers) (setupAnswers, error) {
	var err error
	if s.domain, err = p.ask("DNS domain of the NMOS network (the zone this appliance serves)", s.domain); err != nil {
		return s, err
	}
	def := s.hostname
	if def == "" || !config.InDomain(def, s.domain) {
		def = "est." + strings.TrimSuffix(s.domain, ".")
	}
	if s.hostname, err = p.ask("This appliance's host name, inside that domain", def); err != nil {
		return s, err
	}
	addrs, err := p.ask("This appliance's IP addresses, for its A and AAAA records (comma separated)", strings.Join(s.addresses, ", "))
	if err != nil {
		return s, err
	}
	s.addresses = splitList(addrs)
	roots, err := p.ask("Manufacturer root CA certificates (PEM files, comma separated; empty for none)", strings.Join(s.roots, ", "))
	if err != nil {
		return s, err
	}
	if roots == "-" {
		roots = ""
	}
	s.roots = splitList(roots)
	if s.manual, err = p.yes("Hold requests without a trusted manufacturer certificate for an operator's approval?", s.manual); err != nil {
		return s, err
	}
	return s, nil
}

// check loads data as the configuration file path would be, and checks
// the files it names.
func checkSetup(ctx context.Context, data []byte, path string) error {
	cfg, err := config.Load(data, path)
	if err != nil {
		return err
	}
	return app.CheckConfig(ctx, cfg)
}

// writeConfig writes data to path atomically: a reader sees the old file
// or the new one, never a part. An existing file is replaced only with
// force.
func writeConfig(path string, data []byte, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return fmt.Errorf("%s exists: not overwriting it (--force replaces it)", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".nmos-certs-setup-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func setupCommand() *cli.Command {
	return &cli.Command{
		Name:  "setup",
		Usage: "write a configuration file for this appliance by asking a few questions (the OS image runs it on the console at first boot)",
		Description: "Asks for the domain, the appliance's host name and addresses, the manufacturer roots and\n" +
			"whether requests wait for approval, with the options as defaults; checks the result as\n" +
			"'config check' does and asks again until it is valid. With --yes it asks nothing and\n" +
			"writes the options as they are.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "/etc/nmos-certs/nmos-certs.yaml", Usage: "configuration `FILE` to write"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out"},
			&cli.BoolFlag{Name: "yes", Usage: "ask nothing: write the options (--domain and --address at least)"},
			&cli.StringFlag{Name: "domain", Usage: "the DNS `ZONE` the appliance serves"},
			&cli.StringFlag{Name: "hostname", Usage: "the appliance's host `NAME` (default est.ZONE)"},
			&cli.StringSliceFlag{Name: "address", Usage: "an `IP` address of the appliance (repeat; default the machine's own)"},
			&cli.StringSliceFlag{Name: "trusted-root", Usage: "a manufacturer root CA, PEM `FILE` (repeat)"},
			&cli.BoolFlag{Name: "manual-approval", Value: true, Usage: "requests without a trusted manufacturer certificate wait for an operator"},
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/nmos-certs", Usage: "the appliance's data `DIR`"},
		},
		Action: func(c *cli.Context) error {
			out := c.String("out")
			if _, err := os.Lstat(out); err == nil && !c.Bool("force") {
				return fmt.Errorf("%s exists: not overwriting it (--force replaces it)", out)
			}
			s := setupAnswers{
				domain:    strings.ToLower(strings.TrimSuffix(c.String("domain"), ".")),
				hostname:  strings.ToLower(strings.TrimSuffix(c.String("hostname"), ".")),
				addresses: c.StringSlice("address"),
				roots:     c.StringSlice("trusted-root"),
				manual:    c.Bool("manual-approval"),
				dataDir:   c.String("data-dir"),
			}
			if len(s.addresses) == 0 {
				s.addresses = hostAddresses()
			}
			if s.hostname == "" && s.domain != "" {
				s.hostname = "est." + s.domain
			}
			if c.Bool("yes") {
				data := s.yaml(time.Now())
				if err := checkSetup(c.Context, data, out); err != nil {
					return err
				}
				if err := writeConfig(out, data, c.Bool("force")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s: written\n", out)
				return nil
			}
			p := &prompter{in: bufio.NewReader(c.App.Reader), out: c.App.Writer}
			fmt.Fprintln(p.out, "nmos-certs setup: an empty answer keeps the value in brackets.")
			for {
				var err error
				if s, err = p.interview(s); err != nil {
					return err
				}
				data := s.yaml(time.Now())
				if err := checkSetup(c.Context, data, out); err != nil {
					fmt.Fprintf(p.out, "\nThat configuration is not valid:\n")
					for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
						fmt.Fprintf(p.out, "  %s\n", line)
					}
					fmt.Fprintf(p.out, "Please answer again.\n\n")
					continue
				}
				fmt.Fprintf(p.out, "\n%s\n", data)
				ok, err := p.yes("Write this to "+out+"?", true)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if err := writeConfig(out, data, c.Bool("force")); err != nil {
					return err
				}
				fmt.Fprintf(p.out, "%s: written\n", out)
				return nil
			}
		},
	}
}

func bannerCommand() *cli.Command {
	return &cli.Command{
		Name:  "banner",
		Usage: "print what a console shows: the appliance's addresses, its CA fingerprints and its URLs",
		Description: "Reads the configuration and the CA (as 'ca status' does, so run it as the service user\n" +
			"while the appliance serves: runuser -u nmos-certs -- nmos-certs banner --config FILE).",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return withCA(c, false, func(ctx context.Context, a *ca.Authority, _ store.Store) error {
				return printBanner(c.App.Writer, cfg, a.Generations(), hostAddresses())
			})
		},
	}
}

// printBanner writes the console banner.
func printBanner(w io.Writer, cfg *config.Config, gens []ca.GenerationInfo, local []string) error {
	url := func(scheme, listen, path string) string {
		if listen == config.Off {
			return "(off)"
		}
		host, port, _ := net.SplitHostPort(listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = cfg.Hostname
		}
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
			return scheme + "://" + host + path
		}
		return scheme + "://" + net.JoinHostPort(host, port) + path
	}
	var b strings.Builder
	fmt.Fprintf(&b, "nmos-certs %s  %s (zone %s)\n", app.Version, cfg.Hostname, cfg.Domain)
	fmt.Fprintf(&b, "  published addresses  %s\n", strings.Join(cfg.Addresses, ", "))
	if len(local) > 0 {
		fmt.Fprintf(&b, "  this machine         %s\n", strings.Join(local, ", "))
	}
	fmt.Fprintf(&b, "  EST                  %s\n", url("https", cfg.Listen.EST, "/.well-known/est/"))
	fmt.Fprintf(&b, "  DNS-SD               %s (_nmos-certs._tcp.%s)\n", cfg.Listen.DNS, cfg.Domain)
	fmt.Fprintf(&b, "  OCSP, CRLs           %s\n", url("http", cfg.Listen.HTTP, "/ocsp"))
	fmt.Fprintf(&b, "  metrics              %s\n", url("http", cfg.Listen.Metrics, "/metrics"))
	fmt.Fprintf(&b, "  web UI               %s\n", url("https", cfg.Listen.Web, "/"))
	fmt.Fprintf(&b, "  CA roots (SHA-256):\n")
	n := 0
	for _, g := range gens {
		if g.Role != "root" || g.State == store.StateRetired {
			continue
		}
		fmt.Fprintf(&b, "    %-14s %s\n", g.ID, colonHex(g.Fingerprint))
		n++
	}
	if n == 0 {
		b.WriteString("    (none yet: the CA is created when the service first starts)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
