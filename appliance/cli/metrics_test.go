package cli

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLICountedByRunningAppliance: what certs issue issues or refuses
// beside a running appliance shows in that appliance's /metrics.
func TestCLICountedByRunningAppliance(t *testing.T) {
	needOpenSSL(t)
	cfgPath, dir := siteConfig(t, "")
	a := startApp(t, cfgPath, nil)
	metric := func(series string) string {
		resp, err := http.Get("http://" + a.Addr("metrics").String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, series+" ") {
				return strings.TrimPrefix(l, series+" ")
			}
		}
		return ""
	}
	issued := `nmos_certs_ca_issued_total{key_type="ecdsa",profile="leaf"}`
	refused := `nmos_certs_ca_refused_total{reason="key_reused"}`
	if got := metric(issued); got != "0" {
		t.Fatalf("before: %s = %q", issued, got)
	}
	csr := opensslCSR(t, dir, "c1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=c1.studio.example.test", "")
	if r := run(t, "certs", "issue", "--config", cfgPath, "--csr", csr, "--out", filepath.Join(dir, "c1.crt")); r.code != 0 {
		t.Fatal(r)
	}
	if r := run(t, "certs", "issue", "--config", cfgPath, "--csr", csr, "--out", filepath.Join(dir, "c1b.crt")); r.code == 0 {
		t.Fatal(r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(issued) != "1" || metric(refused) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("after the CLI: %s = %q, %s = %q", issued, metric(issued), refused, metric(refused))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
