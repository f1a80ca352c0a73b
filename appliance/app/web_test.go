package app

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOperatorUI(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	cfg.Listen.Web = "127.0.0.1:0"
	a := start(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := "https://" + a.Addr("web").String()
	fetch := func(method, path string) (*http.Response, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := fetch("GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>nmos-certs</title>") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("index: %d %q", resp.StatusCode, body[:min(len(body), 200)])
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatal("UI not served over TLS 1.2+")
	}
	for _, asset := range []string{"/app.js", "/style.css"} {
		if resp, _ := fetch("GET", asset); resp.StatusCode != 200 {
			t.Errorf("%s: %d", asset, resp.StatusCode)
		}
	}
	resp, body = fetch("GET", "/api/v1/status")
	var s webStatus
	if err := json.Unmarshal([]byte(body), &s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
	if len(s.Generations) != 4 || s.Generations[0].ID != "ecdsa-root-1" || s.Generations[0].Key != "ECDSA P-384" {
		t.Fatalf("generations %+v", s.Generations)
	}
	if g := s.Generations[1]; g.RolloverDue || g.LifeUsed > 0.01 || !strings.Contains(body, `"rollover_due":false`) {
		t.Fatalf("a new intermediate: life used %v, rollover due %v", g.LifeUsed, g.RolloverDue)
	}
	// The appliance's own TLS certificates are on record.
	if len(s.Certificates) < 2 || s.Certificates[0].Status != "valid" {
		t.Fatalf("certificates %+v", s.Certificates)
	}
	if resp, _ := fetch("POST", "/api/v1/status"); resp.StatusCode != 405 {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

func TestOperatorUILoopbackOnly(t *testing.T) {
	h := loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	for addr, want := range map[string]int{"127.0.0.1:5000": 204, "[::1]:5000": 204, "192.0.2.7:5000": 403, "garbage": 403} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = addr
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", addr, rec.Code, want)
		}
	}
}
