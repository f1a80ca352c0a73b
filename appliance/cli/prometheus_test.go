package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The Prometheus rules and the Grafana dashboard shipped with the
// appliance (image/prometheus, image/grafana; the package installs them
// under /usr/share/nmos-certs).
var (
	rulesFile     = filepath.Join("..", "..", "image", "prometheus", "nmos-certs.rules.yml")
	rulesTestFile = filepath.Join("..", "..", "image", "prometheus", "nmos-certs.rules.test.yml")
	dashboardFile = filepath.Join("..", "..", "image", "grafana", "nmos-certs.json")
)

// needTool stops the test, naming the Debian package to install, when a
// program it runs is missing: `make test` installs them.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: install it (apt-get install %s; make test does) to run this test", name, pkg)
	}
	return p
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string            `yaml:"record"`
			Alert  string            `yaml:"alert"`
			Expr   string            `yaml:"expr"`
			Labels map[string]string `yaml:"labels"`
			Annot  map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return rf
}

// TestPrometheusRules: promtool accepts the rules, and their unit tests
// pass. Every alert has a severity and a runbook section in
// docs/alerts.md, and its tests show it firing and staying quiet.
func TestPrometheusRules(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", filepath.Base(rulesFile)}, {"test", "rules", filepath.Base(rulesTestFile)}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	runbook, err := os.ReadFile(filepath.Join("..", "..", "docs", "alerts.md"))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			Alerts []struct {
				Alert string `yaml:"alertname"`
				Exp   []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.Alerts {
			if len(a.Exp) > 0 {
				fires[a.Alert] = true
			} else {
				quiet[a.Alert] = true
			}
		}
	}
	alerts := 0
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			// The runbook is the section of docs/alerts.md named after the
			// alert (GitHub's anchor for a heading is its lower case).
			u := r.Annot["runbook_url"]
			if !strings.HasSuffix(u, "/docs/alerts.md#"+strings.ToLower(r.Alert)) ||
				!regexp.MustCompile(`(?m)^## `+regexp.QuoteMeta(r.Alert)+`$`).Match(runbook) {
				t.Errorf("%s: runbook %q: want docs/alerts.md#%s and its section \"## %s\"", r.Alert, u, strings.ToLower(r.Alert), r.Alert)
			}
			if r.Annot["summary"] == "" || r.Annot["description"] == "" {
				t.Errorf("%s: a summary and a description are wanted", r.Alert)
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: its tests show it firing: %v, and quiet: %v; both are wanted", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts < 15 {
		t.Fatalf("%d alerts in %s", alerts, rulesFile)
	}
}

var (
	promString  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBraces  = regexp.MustCompile(`\{[^{}]*\}`)
	promRange   = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGroup   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent   = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeyword = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
	grafanaVar  = regexp.MustCompile(`\$\{?[A-Za-z_]+\}?`)
)

// promqlNames returns the metric names a PromQL expression reads: the
// identifiers left once strings, label matchers, ranges, grouping
// clauses, function calls, keywords and numbers are taken out.
func promqlNames(expr string) []string {
	e := grafanaVar.ReplaceAllString(expr, ".*")
	e = promString.ReplaceAllString(e, `""`)
	e = promBraces.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGroup.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "0123456789.") {
			continue // part of a number or a duration
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		if slices.Contains(promKeyword, strings.ToLower(id)) {
			continue
		}
		names = append(names, id)
	}
	return names
}

func TestPromQLNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (instance, le) (rate(a_bucket{x="y",z=~"$instance"}[5m])) / ignoring(le) b_total offset 5m > 0.5`:             "a_bucket b_total",
		`histogram_quantile(0.99, sum without (le) (rate(c_seconds_bucket[1h]))) and on (instance) up{job="nmos-certs"} == 1`: "c_seconds_bucket up",
		`(nmos_certs:ca_cert_days_left{state=~"active|next"} - time()) / 86400 < 1e3`:                                         "nmos_certs:ca_cert_days_left",
		`time() > x_seconds{label="a {b} [c]"}`: "x_seconds",
	} {
		if got := strings.Join(promqlNames(expr), " "); got != want {
			t.Errorf("%s: %q, want %q", expr, got, want)
		}
	}
}

// dashboardExprs returns the PromQL of every panel target and the metric
// of every label_values() variable of the dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 || ids[p.ID] {
			t.Errorf("panel %d %q: no query, or its id used twice", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if m := regexp.MustCompile(`label_values\(([A-Za-z_:][A-Za-z0-9_:]*)`).FindStringSubmatch(v.Definition); m != nil {
			exprs = append(exprs, m[1])
		}
	}
	if d.UID == "" || len(exprs) < 10 {
		t.Fatalf("%s: uid %q, %d queries", dashboardFile, d.UID, len(exprs))
	}
	return exprs
}

// metricNames returns the sample names of a Prometheus text exposition.
func metricNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPrometheusScrapesAppliance: every series the rules and the
// dashboard read is one a running appliance exports (so that a rename
// breaks the build, not the facility's alerting), and a real Prometheus
// scrapes the appliance, finds the target up with its nmos_certs_* and
// coredns_* series, and evaluates every rule without an error.
func TestPrometheusScrapesAppliance(t *testing.T) {
	prom := needTool(t, "prometheus", "prometheus")
	dig := needTool(t, "dig", "dnsutils")
	cfg, dir := initSite(t, "")
	// An offline root: the series of its imported CRL exists only then.
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	if r := run(t, "ca", "export-root-key", "--hierarchy", "ecdsa", "--out", filepath.Join(t.TempDir(), "root.key"), "--passphrase-file", pass, "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	a := startApp(t, cfg, nil)
	// CoreDNS makes its series with the first query.
	dnsHost, dnsPort, _ := net.SplitHostPort(a.Addr("dns").String())
	if out, err := exec.Command(dig, "@"+dnsHost, "-p", dnsPort, "+time=2", "+tries=2", "_nmos-certs._tcp.studio.example.test", "PTR").CombinedOutput(); err != nil || !strings.Contains(string(out), "status: NOERROR") {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	metricsAddr := a.Addr("metrics").String()
	var exported map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, body := httpGet(t, "http://"+metricsAddr+"/metrics")
		exported = metricNames(body)
		if exported["coredns_dns_responses_total"] || time.Now().After(deadline) {
			break
		}
	}

	recorded := map[string]bool{}
	var exprs []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			exprs = append(exprs, r.Expr)
		}
	}
	exprs = append(exprs, dashboardExprs(t)...)
	checked := 0
	for _, e := range exprs {
		for _, name := range promqlNames(e) {
			checked++
			switch {
			case name == "up": // Prometheus's own, for every target
			case recorded[name]:
			case !exported[name]:
				t.Errorf("%q reads %s, which the appliance does not export", strings.TrimSpace(e), name)
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d series names found in the rules and the dashboard", checked)
	}

	// A real Prometheus, scraping the appliance every second.
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	pdir := t.TempDir()
	pcfg := filepath.Join(pdir, "prometheus.yml")
	os.WriteFile(pcfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: nmos-certs
    static_configs:
      - targets: [%q]
`, rules, metricsAddr)), 0o644)
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(prom, "--config.file="+pcfg, "--storage.tsdb.path="+filepath.Join(pdir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--log.level=warn")
	logf, _ := os.Create(filepath.Join(pdir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	promLog := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }

	query := func(q string) []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	} {
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" {
			return nil
		}
		return r.Data.Result
	}
	value := func(q string) float64 {
		res := query(q)
		if len(res) != 1 {
			return -1
		}
		s, _ := res[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return -1
		}
		return v
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); !ok(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) || cmd.ProcessState != nil {
				t.Fatalf("Prometheus: %s: not within 90 s\n%s", what, promLog())
			}
		}
	}
	waitFor("the appliance's target up", func() bool { return value(`up{job="nmos-certs"}`) == 1 })
	waitFor("nmos_certs_* series", func() bool { return value(`count({__name__=~"nmos_certs_.+",job="nmos-certs"})`) > 50 })
	waitFor("coredns_* series", func() bool { return value(`count({__name__=~"coredns_.+",job="nmos-certs"})`) > 5 })
	// The recording rule of CA lifetimes: one series per CA certificate,
	// each with years left.
	waitFor("nmos_certs:ca_cert_days_left recorded", func() bool {
		res := query(`nmos_certs:ca_cert_days_left`)
		if len(res) != 4 {
			return false
		}
		for _, r := range res {
			s, _ := r.Value[1].(string)
			if v, _ := strconv.ParseFloat(s, 64); v < 365 {
				return false
			}
		}
		return true
	})
	// Every rule evaluated, none in error; nothing fires on a healthy
	// appliance.
	type rule struct {
		Name      string `json:"name"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
		State     string `json:"state"`
	}
	var last []rule
	waitFor("every rule evaluated", func() bool {
		resp, err := http.Get(base + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Rules []rule `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil {
			return false
		}
		last = last[:0]
		for _, g := range r.Data.Groups {
			last = append(last, g.Rules...)
		}
		if len(last) < 25 {
			return false
		}
		for _, r := range last {
			if r.Health != "ok" {
				return false
			}
		}
		return true
	})
	for _, r := range last {
		if r.LastError != "" || (r.State != "" && r.State != "inactive") {
			t.Errorf("rule %s: state %q, error %q", r.Name, r.State, r.LastError)
		}
	}
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
