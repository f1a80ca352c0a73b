package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globalsign/est"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
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
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>Dashboard: nmos-certs</title>") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("index: %d %q", resp.StatusCode, body[:min(len(body), 200)])
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatal("UI not served over TLS 1.2+")
	}
	// The dashboard as a loopback viewer before any account exists: every
	// service is up and the CA and CRLs are listed.
	for _, want := range []string{`ok</span> store`, `ok</span> dns`, "ecdsa-int-1", "/crl/ecdsa-int-1.crl", "TLS (ECDSA)", "OCSP responder for ecdsa-int-1"} {
		if !strings.Contains(body, want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}
	if strings.Contains(body, "failing</span>") {
		t.Errorf("a service is failing on a healthy appliance")
	}
	for _, asset := range []string{"/style.css"} {
		if resp, _ := fetch("GET", asset); resp.StatusCode != 200 {
			t.Errorf("%s: %d", asset, resp.StatusCode)
		}
	}
	resp, body = fetch("GET", "/api/v1/status")
	var s webroot.StatusView
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

// TestOperatorUISignInFlow: over the web listener's TLS, with an account:
// nothing without signing in; a device without a manufacturer
// certificate waits (202), the operator approves it through the API and
// the device's retry gets its certificate; the operator revokes it and
// openssl's OCSP query says revoked; a viewer can do neither (403); a
// cross-site POST is refused; sign-out ends the session.
func TestOperatorUISignInFlow(t *testing.T) {
	a, dir := startWithAccounts(t, map[string]string{"otto": "operator", "vera": "viewer"})
	ctx := context.Background()
	base := "https://" + a.Addr("web").String()
	otto := newUISession(t, base, "otto")
	vera := newUISession(t, base, "vera")

	// A device without a manufacturer certificate waits.
	client := &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrFor(t, key, "cam9.studio.example.test")
	if _, err := client.Enroll(ctx, csr); !containsStatus(err, 202) {
		var ra interface{ RetryAfter() int }
		if !errors.As(err, &ra) {
			t.Fatalf("first request: %v, want 202", err)
		}
	}
	waiting, _ := a.store.ListPending(ctx, store.PendingWaiting)
	if len(waiting) != 1 {
		t.Fatalf("%d waiting", len(waiting))
	}
	id := waiting[0].ID
	if _, body := vera.send("GET", "/api/v1/status", "", ""); !strings.Contains(body, id) {
		t.Fatalf("the viewer does not see request %s: %s", id, body)
	}
	if code, _ := vera.send("POST", "/api/v1/requests/"+id+"/approve", base, ""); code != 403 {
		t.Fatalf("a viewer approved: %d", code)
	}
	if code, _ := otto.send("POST", "/api/v1/requests/"+id+"/approve", "https://evil.example", ""); code != 403 {
		t.Fatalf("a cross-site approval: %d", code)
	}
	if code, body := otto.send("POST", "/api/v1/requests/"+id+"/approve", base, ""); code != 204 {
		t.Fatalf("approve: %d %s", code, body)
	}
	cert, err := client.Enroll(ctx, csr)
	if err != nil {
		t.Fatalf("the retry after approval: %v", err)
	}

	// Revoke from the UI; openssl's OCSP query says revoked.
	serial := store.SerialKey(cert.SerialNumber)
	if code, _ := vera.send("POST", "/api/v1/certificates/"+serial+"/revoke", base, `{"reason":"keyCompromise"}`); code != 403 {
		t.Fatalf("a viewer revoked: %d", code)
	}
	if code, body := otto.send("POST", "/api/v1/certificates/"+serial+"/revoke", base, `{"reason":"keyCompromise"}`); code != 204 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	issuerCert, _ := a.Authority().CACertificate("ecdsa-int-1")
	rootCert, _ := a.Authority().CACertificate("ecdsa-root-1")
	leaf := writePEM(t, filepath.Join(dir, "leaf.pem"), cert)
	issuer := writePEM(t, filepath.Join(dir, "int.pem"), issuerCert)
	chain := writePEM(t, filepath.Join(dir, "chain.pem"), issuerCert, rootCert)
	var out []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err = exec.Command("openssl", "ocsp", "-sha256", "-issuer", issuer, "-cert", leaf, "-url", "http://"+a.Addr("http").String()+"/ocsp", "-CAfile", chain).CombinedOutput()
		if err == nil && strings.Contains(string(out), leaf+": revoked") && strings.Contains(string(out), "Reason: keyCompromise") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OCSP after the revocation: %v\n%s", err, out)
		}
	}
	// The certificate's detail says revoked, and its PEM and chain
	// download as files.
	_, body := vera.send("GET", "/api/v1/certificates/"+serial, "", "")
	var detail struct {
		Status, Reason, PEM string
		Chain               string `json:"chain_pem"`
		Names               []string
	}
	if err := json.Unmarshal([]byte(body), &detail); err != nil || detail.Status != "revoked" || detail.Reason != "keyCompromise" ||
		len(detail.Names) != 1 || detail.Names[0] != "cam9.studio.example.test" {
		t.Fatalf("detail: %v %s", err, body)
	}
	if n := strings.Count(detail.Chain, "BEGIN CERTIFICATE"); n != 3 || !strings.HasPrefix(detail.Chain, detail.PEM) {
		t.Fatalf("chain of %d certificates:\n%s", n, detail.Chain)
	}
	if code, pemBody := vera.send("GET", "/api/v1/certificates/"+serial+"/pem?chain=1", "", ""); code != 200 || pemBody != detail.Chain {
		t.Fatalf("chain download: %d", code)
	}
	if code, _ := vera.send("GET", "/api/v1/certificates/00ff/pem", "", ""); code != 404 {
		t.Fatalf("a serial never issued: %d", code)
	}
	if code, _ := vera.send("GET", "/api/v1/certificates/not-hex", "", ""); code != 400 {
		t.Fatalf("a serial that is not hexadecimal: %d", code)
	}
	// Both actions are audited with the operator and the address.
	_, body = vera.send("GET", "/api/v1/audit", "", "")
	for _, want := range []string{`"action":"request_approved","target":"` + id, `"action":"certificate_revoked","target":"` + serial, `"actor":"operator otto (web)"`, `"remote":"127.0.0.1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("audit lacks %s:\n%s", want, body)
		}
	}
	// Sign-out ends the session.
	if code, _ := otto.send("POST", "/logout", base, ""); code != 204 {
		t.Fatalf("sign out: %d", code)
	}
	if code, _ := otto.send("GET", "/api/v1/status", "", ""); code != 401 {
		t.Fatalf("status after sign-out: %d", code)
	}
}

// startWithAccounts runs an appliance that holds enrollments without a
// manufacturer certificate for approval, with its web UI on loopback and
// an account for each name (role by name; password "NAME password 123").
func startWithAccounts(t *testing.T, accounts map[string]string) (*App, string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: install it (make test does) to run this test")
	}
	dir := t.TempDir()
	cfg := testConfig(t, dir, "est:\n  manual_approval: true\n  retry_after: 1s\n")
	cfg.Listen.Web = "127.0.0.1:0"
	a := start(t, cfg)
	cheap := auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1} // the format of real hashes, cheaply
	for name, role := range accounts {
		h, err := auth.Hash(name+" password 123", cheap)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.store.PutUser(context.Background(), &store.User{Name: name, Role: role, PasswordHash: h, CreatedAt: time.Now()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return a, dir
}

// TestOperatorUIConfigReload: an admin reads the running configuration
// and reloads the file from the UI; a broken file is refused with its
// reason and the running configuration stays; both are audited.
func TestOperatorUIConfigReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nmos-certs.yaml")
	base := testConfig(t, dir, "")
	y := "data_dir: " + base.DataDir + "\nlisten:\n  est: 127.0.0.1:0\n  http: 127.0.0.1:0\n  dns: 127.0.0.1:0\n  metrics: 127.0.0.1:0\n  web: 127.0.0.1:0\ndns:\n  advertise:\n    - port: 8443\n"
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := start(t, cfg)
	h, _ := auth.Hash("ada password 123", auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1})
	if err := a.store.PutUser(context.Background(), &store.User{Name: "ada", Role: "admin", PasswordHash: h, CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	ui := "https://" + a.Addr("web").String()
	ada := newUISession(t, ui, "ada")
	send := func(method, p, body string) (int, string) { t.Helper(); return ada.send(method, p, ui, body) }
	_, body := send("GET", "/api/v1/config", "")
	var v struct {
		Source, YAML string
		OK           bool   `json:"last_reload_ok"`
		Error        string `json:"last_reload_error"`
		Reloadable   bool
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Source != path || !v.Reloadable || !strings.Contains(v.YAML, "retry_after: 30s") {
		t.Fatalf("config: %v %s", err, body)
	}
	os.WriteFile(path, []byte(y+"est:\n  retry_after: 45s\n"), 0o644)
	if code, body := send("POST", "/api/v1/config/reload", ""); code != 204 {
		t.Fatalf("reload: %d %s", code, body)
	}
	_, body = send("GET", "/api/v1/config", "")
	json.Unmarshal([]byte(body), &v)
	if !strings.Contains(v.YAML, "retry_after: 45s") || !v.OK {
		t.Fatalf("after the reload: %s", body)
	}
	os.WriteFile(path, []byte(y+"est:\n  retry_after: soon\n"), 0o644)
	code, body := send("POST", "/api/v1/config/reload", "")
	if code != 400 || !strings.Contains(body, "est.retry_after") {
		t.Fatalf("a broken file: %d %s", code, body)
	}
	_, body = send("GET", "/api/v1/config", "")
	json.Unmarshal([]byte(body), &v)
	if v.OK || !strings.Contains(v.Error, "est.retry_after") || !strings.Contains(v.YAML, "retry_after: 45s") {
		t.Fatalf("after a failed reload: %s", body)
	}
	_, body = send("GET", "/api/v1/audit", "")
	if !strings.Contains(body, `"action":"config_reloaded"`) || !strings.Contains(body, `"action":"config_reload_failed"`) {
		t.Fatalf("audit: %s", body)
	}
}

// uiSession is a client of the operator UI signed in as one account
// (password "NAME password 123"), keeping its cookie and CSRF token, and
// not following redirects.
type uiSession struct {
	t          *testing.T
	base, csrf string
	c          *http.Client
}

func newUISession(t *testing.T, base, name string) *uiSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u := &uiSession{t: t, base: base, c: &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if code, body := u.send("GET", "/api/v1/status", "", ""); code != 401 {
		t.Fatalf("status before sign-in: %d %s", code, body)
	}
	if code, _ := u.send("POST", "/login", base, "user="+name+"&password="+name+"+password+123"); code != 303 {
		t.Fatalf("sign-in of %s: %d", name, code)
	}
	_, body := u.send("GET", "/api/v1/session", "", "")
	var s struct{ CSRF string }
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.CSRF == "" {
		t.Fatalf("session %s: %v", body, err)
	}
	u.csrf = s.CSRF
	return u
}

// send makes a request with the session's cookie and CSRF token, and
// Origin when not empty; a body starting "user=" is a form.
func (u *uiSession) send(method, path, origin, body string) (int, string) {
	u.t.Helper()
	req, _ := http.NewRequest(method, u.base+path, strings.NewReader(body))
	if u.csrf != "" {
		req.Header.Set("X-CSRF-Token", u.csrf)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if strings.HasPrefix(body, "user=") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
