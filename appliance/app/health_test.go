package app

import (
	"net/http"
	"strings"
	"testing"
)

// TestHealthAndReadiness: /healthz answers while the process lives;
// /readyz lists every check, and says 503 naming the store once it can
// no longer be written.
func TestHealthAndReadiness(t *testing.T) {
	a := start(t, testConfig(t, t.TempDir(), ""))
	base := "http://" + a.Addr("metrics").String()
	resp, body := get(t, base+"/healthz")
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, base+"/readyz")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"ok listener est", "ok listener http", "ok dns", "ok ca", "ok tls certificates", "ok store"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("readyz lacks %q:\n%s", want, body)
		}
	}
	// The appliance's own certificates' expiry.
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{`nmos_certs_tls_cert_expiry_timestamp_seconds{hierarchy="ecdsa"}`, `nmos_certs_tls_cert_expiry_timestamp_seconds{hierarchy="rsa"}`,
		`nmos_certs_ocsp_responder_cert_expiry_timestamp_seconds{issuer="ecdsa-int-1"}`, `nmos_certs_ocsp_responder_cert_expiry_timestamp_seconds{issuer="rsa-int-1"}`} {
		if !strings.Contains(string(metrics), want+" ") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	a.store.Close()
	resp, body = get(t, base+"/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "fail store:") || !strings.Contains(string(body), "ok ca") {
		t.Fatalf("readyz with the store closed: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, base+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz with the store closed: %d", resp.StatusCode)
	}
}
