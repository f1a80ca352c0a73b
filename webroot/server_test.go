package webroot

import (
	"context"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

var cheap = auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1}

type call struct{ what, arg, actor, remote string }

// fakeBackend records what the UI asked it to do.
type fakeBackend struct {
	mu    sync.Mutex
	calls []call
}

func (b *fakeBackend) record(c call) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, c)
}

func (b *fakeBackend) Status(context.Context) (*StatusView, error) {
	at := time.Unix(1_800_000_000, 0).UTC()
	return &StatusView{Version: "test", Now: at,
		Health:      []HealthView{{Name: "store", OK: true}, {Name: "dns", Detail: "not serving"}},
		Generations: []GenerationView{{ID: "ecdsa-int-1", Role: "intermediate", State: "active", RolloverDue: true, NotAfter: at.Add(24 * time.Hour)}},
		Pending:     pendingFixture(at), Issued24h: 17, Refused24h: 3, RefusedSince: at.Add(-time.Hour),
		CRLs:         []CRLView{{Issuer: "ecdsa-int-1", Number: 42, Stale: true, URL: "http://est.example/crl/ecdsa-int-1.crl"}},
		RecentErrors: []LogView{{At: at, Level: "WARN", Component: "store", Message: "the store is slow <b>", Count: 3, Detail: "err=disk slow"}},
		Appliances: []ApplianceView{
			{Hostname: "est-a.studio.example.test", Addresses: []string{"192.0.2.1"}, Instances: []string{"est-a pri 10 (port 8443, pri 10)"}, LastSeen: at, Self: true, Advertised: true},
			{Hostname: "est-x.studio.example.test", Instances: []string{"<i>x</i> (port 8443, pri 20)"}, LastSeen: at, Problem: "addresses: give its addresses"},
		},
	}, nil
}

// pendingFixture is a request whose subject a hostile device chose.
func pendingFixture(at time.Time) []PendingView {
	return []PendingView{{ID: "r1", Operation: "simpleenroll", CreatedAt: at.Add(-90 * time.Minute), ExpiresAt: at.Add(time.Hour),
		Subject: `CN=<script>alert(1)</script>`, Names: []string{"cam1.studio.example.test"}, Client: "no client certificate", Remote: "192.0.2.50",
		Key: "ECDSA P-256", KeyFingerprint: "ab12", Conflicts: []ConflictView{{Name: "cam1.studio.example.test", Holder: "vendor X serial 9"}}}}
}

func (b *fakeBackend) Pending(context.Context) ([]PendingView, error) {
	return pendingFixture(time.Unix(1_800_000_000, 0).UTC()), nil
}
func (b *fakeBackend) Certificates(_ context.Context, q CertificateSearch) (*CertificateList, error) {
	if q.Status == "bogus" {
		return nil, ErrInvalid
	}
	return &CertificateList{Certificates: []CertificateRow{{Serial: "0a1b", Status: "valid", Names: []string{"cam1.studio.example.test"}}}, Next: "77"}, nil
}
func (b *fakeBackend) CA(context.Context) (*CAView, error) {
	return &CAView{Hierarchies: []HierarchyView{{Name: "ecdsa", Generations: []GenerationView{{ID: "ecdsa-root-1", Role: "root", State: "active", KeyHeld: true}}}}}, nil
}
func (b *fakeBackend) RolloverPlan(_ context.Context, hier, kind string) (*RolloverPlan, error) {
	if hier != "ecdsa" {
		return nil, ErrInvalid
	}
	return &RolloverPlan{Hierarchy: hier, Kind: kind, From: "ecdsa-int-1", Steps: []string{"a new " + kind}, Possible: kind == "intermediate", Why: "not in the test"}, nil
}
func (b *fakeBackend) Rollover(_ context.Context, hier, kind, from, actor, remote string) (string, error) {
	if from != "ecdsa-int-1" {
		return "", errors.New("ecdsa-int-1 is active, not " + from)
	}
	b.record(call{"rollover", hier + " " + kind, actor, remote})
	return "rolled", nil
}
func (b *fakeBackend) Decide(_ context.Context, id string, approve bool, actor, remote string) error {
	if id == "missing" {
		return ErrNotFound
	}
	what := "deny"
	if approve {
		what = "approve"
	}
	b.record(call{what, id, actor, remote})
	return nil
}
func (b *fakeBackend) Revoke(_ context.Context, serial, reason, actor, remote string) error {
	if reason == "bogus" {
		return errors.New("reason bogus: " + ErrInvalid.Error())
	}
	b.record(call{"revoke", serial + " " + reason, actor, remote})
	return nil
}
func (b *fakeBackend) ReleaseName(_ context.Context, name, actor, remote string) error {
	b.record(call{"release", name, actor, remote})
	return nil
}
func (b *fakeBackend) Certificate(_ context.Context, serial string) (*CertificateView, error) {
	if serial != "0a1b" {
		return nil, ErrNotFound
	}
	return &CertificateView{Serial: serial, Status: "valid", PEM: "-----BEGIN CERTIFICATE-----\nleaf\n", ChainPEM: "-----BEGIN CERTIFICATE-----\nleaf\nchain\n"}, nil
}
func (b *fakeBackend) Config(context.Context) (*ConfigView, error) {
	return &ConfigView{Source: "/etc/nmos-certs/nmos-certs.yaml", YAML: "domain: studio.example.test\n", ReloadOK: true, Reloadable: true}, nil
}
func (b *fakeBackend) Reload(_ context.Context, actor, remote string) error {
	b.record(call{"reload", "", actor, remote})
	return nil
}

type fixture struct {
	t   *testing.T
	srv *Server
	st  *store.SQLite
	be  *fakeBackend
	now time.Time
	mu  sync.Mutex
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "ui.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, be: &fakeBackend{}, now: time.Unix(1_800_000_000, 0).UTC()}
	f.srv, err = New(Options{Accounts: st, Backend: f.be, Clock: f.clock, Hash: cheap})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) addUser(name, role, pw string) {
	f.t.Helper()
	h, err := auth.Hash(pw, cheap)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.PutUser(context.Background(), &store.User{Name: name, Role: role, PasswordHash: h, CreatedAt: f.now}, nil); err != nil {
		f.t.Fatal(err)
	}
}

type req struct {
	method, path, remote, cookie, csrf, origin string
	form                                       url.Values
	body                                       string
}

func (f *fixture) do(r req) *httptest.ResponseRecorder {
	f.t.Helper()
	var body *strings.Reader
	switch {
	case r.form != nil:
		body = strings.NewReader(r.form.Encode())
	default:
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, "https://ui.example"+r.path, body)
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	if r.cookie != "" {
		hr.AddCookie(&http.Cookie{Name: SessionCookie, Value: r.cookie})
	}
	if r.csrf != "" {
		hr.Header.Set("X-CSRF-Token", r.csrf)
	}
	if r.origin != "" {
		hr.Header.Set("Origin", r.origin)
	}
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, hr)
	return rec
}

// login signs in and returns the session cookie's value and the CSRF
// token, or fails the test.
func (f *fixture) login(name, pw string) (cookie, csrf string) {
	f.t.Helper()
	rec := f.do(req{method: "POST", path: "/login", form: url.Values{"user": {name}, "password": {pw}}, origin: "https://ui.example"})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		f.t.Fatalf("sign-in of %s: %d %s", name, rec.Code, rec.Body)
	}
	var c *http.Cookie
	for _, x := range rec.Result().Cookies() {
		if x.Name == SessionCookie {
			c = x
		}
	}
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		f.t.Fatalf("session cookie %+v", c)
	}
	rec = f.do(req{method: "GET", path: "/api/v1/session", cookie: c.Value})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"user":"`+name+`"`) {
		f.t.Fatalf("session: %d %s", rec.Code, rec.Body)
	}
	i := strings.Index(rec.Body.String(), `"csrf":"`)
	csrf = rec.Body.String()[i+8:]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	return c.Value, csrf
}

// TestNoAccountsLoopbackOnly: before any account exists the UI answers
// loopback clients only, read-only, and says how to make the first admin.
func TestNoAccountsLoopbackOnly(t *testing.T) {
	f := newFixture(t)
	for remote, want := range map[string]int{"127.0.0.1:5000": 200, "[::1]:5000": 200, "192.0.2.7:5000": 403, "garbage": 403} {
		rec := f.do(req{method: "GET", path: "/api/v1/status", remote: remote})
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", remote, rec.Code, want)
		}
		if want == 403 && !strings.Contains(rec.Body.String(), "users add NAME --role admin") {
			t.Errorf("%s: %s", remote, rec.Body)
		}
	}
	// Read-only: a loopback client without a session changes nothing.
	rec := f.do(req{method: "POST", path: "/api/v1/requests/r1/approve", remote: "127.0.0.1:5000"})
	if rec.Code != 403 || len(f.be.calls) != 0 {
		t.Fatalf("approve without an account: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(req{method: "GET", path: "/login"}); rec.Code != 200 || !strings.Contains(rec.Body.String(), "users add NAME --role admin") {
		t.Fatalf("login page: %d", rec.Code)
	}
}

// TestSignInAndRoles: every route has a role; without a session it is
// refused (pages redirect to /login), with a role below its own it is
// 403, and the headers are strict on every answer.
func TestSignInAndRoles(t *testing.T) {
	f := newFixture(t)
	f.addUser("vera", "viewer", "viewer password 1")
	f.addUser("otto", "operator", "operator password 1")
	f.addUser("ada", "admin", "admin password 12")
	sessions := map[auth.Role][2]string{}
	for role, u := range map[auth.Role][2]string{auth.Viewer: {"vera", "viewer password 1"}, auth.Operator: {"otto", "operator password 1"}, auth.Admin: {"ada", "admin password 12"}} {
		c, x := f.login(u[0], u[1])
		sessions[role] = [2]string{c, x}
		f.advance(time.Second)
	}
	// A name bound, for the release page.
	if err := f.st.PutCertificate(context.Background(), &store.Certificate{Serial: big.NewInt(0x0a1b), IssuerID: "ecdsa-int-1", Subject: "CN=cam1",
		SANs: []string{"cam1.studio.example.test"}, KeyType: "ECDSA P-256", SPKIHash: []byte("k1"), NotBefore: f.now, NotAfter: f.now.Add(time.Hour),
		IssuedAt: f.now, Identity: "vendor", Profile: "leaf", DER: []byte{0x30}, Holder: "vendor", Bind: &store.Binding{}}); err != nil {
		t.Fatal(err)
	}
	public := map[string]bool{"GET /login": true, "POST /login": true, "GET /style.css": true}
	for _, rt := range f.srv.Routes() {
		key := rt.Method + " " + rt.Pattern
		if rt.Role == "" {
			if !public[key] {
				t.Errorf("%s has no role", key)
			}
			continue
		}
		name := "cam1.studio.example.test"
		if strings.HasPrefix(rt.Pattern, "/api/v1/users/") || strings.HasPrefix(rt.Pattern, "/users/") {
			name = "ada" // the admin herself; each call changes nothing for good
		}
		path := strings.NewReplacer("{id}", "r1", "{serial}", "0a1b", "{name}", name, "{$}", "").Replace(rt.Pattern)
		// No session.
		rec := f.do(req{method: rt.Method, path: path})
		if rt.Method == "GET" && !strings.HasPrefix(path, "/api/") {
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
				t.Errorf("%s without a session: %d", key, rec.Code)
			}
		} else if rec.Code != http.StatusUnauthorized && !(rt.Method == "POST" && rec.Code == http.StatusForbidden) {
			t.Errorf("%s without a session: %d", key, rec.Code)
		}
		if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", key, rec.Header())
		}
		switch key {
		case "POST /logout", "POST /api/v1/users/{name}/role", "POST /api/v1/users/{name}/remove", "POST /api/v1/users",
			"POST /users/{name}/role", "POST /users/{name}/remove", "POST /users":
			// They would end sessions or change accounts mid-table;
			// TestSessionTimeouts and TestUserAdmin use them. Only the
			// role check is asked here, of a role below.
			for _, role := range auth.Roles {
				if !role.Allows(rt.Role) {
					s := sessions[role]
					if rec := f.do(req{method: rt.Method, path: path, cookie: s[0], csrf: s[1], body: `{}`}); rec.Code != http.StatusForbidden {
						t.Errorf("%s as %s: %d, want 403", key, role, rec.Code)
					}
				}
			}
			continue
		}
		for _, role := range auth.Roles {
			s := sessions[role]
			r := req{method: rt.Method, path: path, cookie: s[0], csrf: s[1], body: `{"reason":"superseded"}`}
			switch {
			case rt.Method == "POST" && !strings.HasPrefix(path, "/api/"):
				// The pages' forms.
				r.form = url.Values{"id": {"r1"}, "decision": {"approve"}, "reason": {"superseded"}, "hierarchy": {"ecdsa"}, "kind": {"intermediate"}, "from": {"ecdsa-int-1"}}
			case key == "POST /api/v1/ca/rollover":
				r.body = `{"hierarchy":"ecdsa","kind":"intermediate","from":"ecdsa-int-1"}`
			case key == "GET /ca/rollover" || key == "GET /api/v1/ca/rollover":
				r.path += "?hierarchy=ecdsa&kind=intermediate"
			}
			rec := f.do(r)
			allowed := role.Allows(rt.Role)
			if allowed && rec.Code >= 400 {
				t.Errorf("%s as %s: %d %s", key, role, rec.Code, rec.Body)
			}
			if !allowed && rec.Code != http.StatusForbidden {
				t.Errorf("%s as %s: %d, want 403", key, role, rec.Code)
			}
		}
	}
	// The operator's calls reached the backend under the operator's name
	// and address; the viewer's did not.
	var actors []string
	for _, c := range f.be.calls {
		actors = append(actors, c.actor)
		if c.remote != "192.0.2.1" {
			t.Errorf("call %+v: remote", c)
		}
	}
	if strings.Contains(strings.Join(actors, ","), "vera") || !strings.Contains(strings.Join(actors, ","), "operator otto (web)") {
		t.Errorf("backend calls by %v", actors)
	}
	// Errors of the backend map to 404 and 400.
	s := sessions[auth.Operator]
	if rec := f.do(req{method: "POST", path: "/api/v1/requests/missing/approve", cookie: s[0], csrf: s[1]}); rec.Code != 404 {
		t.Errorf("approve a missing request: %d", rec.Code)
	}
	if rec := f.do(req{method: "POST", path: "/api/v1/certificates/0a/revoke", cookie: s[0], csrf: s[1], body: `{"reason":"bogus"}`}); rec.Code != 409 && rec.Code != 400 {
		t.Errorf("revoke with a bogus reason: %d", rec.Code)
	}
}

// TestCSRF: a state change needs the session's token, and a request from
// another site is refused even with it.
func TestCSRF(t *testing.T) {
	f := newFixture(t)
	f.addUser("otto", "operator", "operator password 1")
	c, csrf := f.login("otto", "operator password 1")
	for _, r := range []req{
		{method: "POST", path: "/api/v1/requests/r1/approve", cookie: c},
		{method: "POST", path: "/api/v1/requests/r1/approve", cookie: c, csrf: "forged"},
		{method: "POST", path: "/api/v1/requests/r1/approve", cookie: c, csrf: csrf, origin: "https://evil.example"},
		{method: "POST", path: "/api/v1/requests/r1/approve", cookie: c, form: url.Values{"csrf": {"forged"}}},
		{method: "POST", path: "/logout", cookie: c},
	} {
		if rec := f.do(r); rec.Code != http.StatusForbidden {
			t.Errorf("%+v: %d, want 403", r, rec.Code)
		}
	}
	if len(f.be.calls) != 0 {
		t.Fatalf("a forged request reached the backend: %+v", f.be.calls)
	}
	// The token in a form field works as the header does.
	if rec := f.do(req{method: "POST", path: "/api/v1/requests/r1/deny", cookie: c, form: url.Values{"csrf": {csrf}}, origin: "https://ui.example"}); rec.Code != 204 {
		t.Fatalf("form token: %d %s", rec.Code, rec.Body)
	}
	// A sign-in posted from another site is refused before any password
	// is checked.
	rec := f.do(req{method: "POST", path: "/login", form: url.Values{"user": {"otto"}, "password": {"operator password 1"}}, origin: "https://evil.example"})
	if rec.Code != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", rec.Code)
	}
}

// TestLockout: five failures lock the account, and the right password
// does not open it until an operator unlocks it or the lock ends; an
// address that keeps failing is slowed, then refused.
func TestLockout(t *testing.T) {
	f := newFixture(t)
	f.addUser("otto", "operator", "operator password 1")
	fail := func(name, pw, remote string) *httptest.ResponseRecorder {
		f.t.Helper()
		rec := f.do(req{method: "POST", path: "/login", remote: remote, form: url.Values{"user": {name}, "password": {pw}}})
		if rec.Code == http.StatusSeeOther {
			f.t.Fatalf("%s signed in with %q", name, pw)
		}
		return rec
	}
	for i := range auth.AccountFailures {
		rec := fail("otto", "wrong password "+string(rune('a'+i)), "192.0.2.1:1")
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "wrong name or password") {
			t.Fatalf("failure %d: %d %s", i, rec.Code, rec.Body)
		}
		f.advance(10 * time.Second) // past the address's backoff
	}
	// The right password, from another address: still locked, and the
	// answer does not say so apart from a wrong password.
	rec := fail("otto", "operator password 1", "198.51.100.9:1")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "wrong name or password") {
		t.Fatalf("locked: %d %s", rec.Code, rec.Body)
	}
	f.advance(10 * time.Minute)
	fail("otto", "operator password 1", "198.51.100.10:1")
	// An unknown account answers the same.
	if rec := fail("nobody", "whatever password", "198.51.100.11:1"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("unknown account: %d", rec.Code)
	}
	// The operator unlocks it.
	if _, err := f.st.UpdateUser(context.Background(), "otto", store.UserUpdate{Unlock: true}, f.now, nil); err != nil {
		t.Fatal(err)
	}
	f.login("otto", "operator password 1")
	recs, _ := f.st.Audit(context.Background(), 0)
	locked := 0
	for _, r := range recs {
		if r.Action == "user_locked" {
			locked++
		}
	}
	if locked == 0 {
		t.Fatal("the lockout is not audited")
	}

	// An address: backoff after a failure (429 with Retry-After).
	fail("nobody", "a", "203.0.113.5:1")
	rec = f.do(req{method: "POST", path: "/login", remote: "203.0.113.5:1", form: url.Values{"user": {"otto"}, "password": {"operator password 1"}}})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("during the backoff: %d %v", rec.Code, rec.Header())
	}
}

// TestSessionTimeouts: a session ends when idle for 30 minutes, after
// 12 hours whatever its use, and when its holder signs out.
func TestSessionTimeouts(t *testing.T) {
	f := newFixture(t)
	f.addUser("vera", "viewer", "viewer password 1")
	status := func(c string) int { return f.do(req{method: "GET", path: "/api/v1/status", cookie: c}).Code }

	c, _ := f.login("vera", "viewer password 1")
	f.advance(29 * time.Minute)
	if status(c) != 200 {
		t.Fatal("ended before 30 idle minutes")
	}
	f.advance(30 * time.Minute)
	if status(c) != 401 {
		t.Fatal("alive after 30 idle minutes")
	}

	// The dashboard's own refresh is not use: a session with only the
	// dashboard open ends after 30 minutes.
	c, _ = f.login("vera", "viewer password 1")
	for range 59 {
		f.advance(30 * time.Second)
		if rec := f.do(req{method: "GET", path: "/?auto=1", cookie: c}); rec.Code != 200 {
			t.Fatalf("refresh: %d", rec.Code)
		}
	}
	f.advance(31 * time.Second)
	if rec := f.do(req{method: "GET", path: "/?auto=1", cookie: c}); rec.Code != http.StatusSeeOther {
		t.Fatalf("a session kept alive by the dashboard's refresh alone: %d", rec.Code)
	}

	c, _ = f.login("vera", "viewer password 1")
	for range 35 { // used every 20 minutes for 11 h 40 min
		f.advance(20 * time.Minute)
		if status(c) != 200 {
			t.Fatal("a session in use ended early")
		}
	}
	f.advance(20 * time.Minute)
	if status(c) != 401 {
		t.Fatal("alive after 12 hours")
	}

	c, csrf := f.login("vera", "viewer password 1")
	if rec := f.do(req{method: "POST", path: "/logout", cookie: c, csrf: csrf}); rec.Code != 204 {
		t.Fatalf("sign out: %d", rec.Code)
	}
	if status(c) != 401 {
		t.Fatal("alive after signing out")
	}
	// A changed password ends the session too.
	c, _ = f.login("vera", "viewer password 1")
	if _, err := f.st.UpdateUser(context.Background(), "vera", store.UserUpdate{PasswordHash: "x"}, f.now, nil); err != nil {
		t.Fatal(err)
	}
	if status(c) != 401 {
		t.Fatal("alive after a password change")
	}
}

// TestUserAdmin: an admin manages accounts through the API, each change
// audited under the admin's name; the last admin stays; bad input is 400.
func TestUserAdmin(t *testing.T) {
	f := newFixture(t)
	f.addUser("ada", "admin", "admin password 12")
	c, csrf := f.login("ada", "admin password 12")
	post := func(path, body string) int {
		return f.do(req{method: "POST", path: path, cookie: c, csrf: csrf, body: body}).Code
	}
	// In order: the second bob finds the name taken.
	for _, c := range []struct {
		body string
		want int
	}{
		{`{"name":"bob","role":"operator","password":"bob password 12"}`, 201},
		{`{"name":"bob","role":"viewer","password":"bob password 12"}`, 409},
		{`{"name":"Bob","role":"viewer","password":"bob password 12"}`, 400},
		{`{"name":"carl","role":"root","password":"carl password 12"}`, 400},
		{`{"name":"carl","role":"viewer","password":"short"}`, 400},
		{`{"name":"carl","role":"viewer","password":"x","extra":1}`, 400},
		{`not json`, 400},
	} {
		if got := post("/api/v1/users", c.body); got != c.want {
			t.Errorf("add %s: %d, want %d", c.body, got, c.want)
		}
	}
	if got := post("/api/v1/users/ada/role", `{"role":"viewer"}`); got != 409 {
		t.Errorf("demote the last admin: %d", got)
	}
	if got := post("/api/v1/users/ada/remove", ``); got != 409 {
		t.Errorf("remove the last admin: %d", got)
	}
	if got := post("/api/v1/users/nobody/unlock", ``); got != 404 {
		t.Errorf("unlock nobody: %d", got)
	}
	if got := post("/api/v1/users/bob/role", `{"role":"admin"}`); got != 204 {
		t.Errorf("promote bob: %d", got)
	}
	f.login("bob", "bob password 12")
	if got := post("/api/v1/users/bob/remove", ``); got != 204 {
		t.Errorf("remove bob: %d", got)
	}
	rec := f.do(req{method: "GET", path: "/api/v1/users", cookie: c})
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "bob") || !strings.Contains(rec.Body.String(), `"name":"ada"`) {
		t.Fatalf("users: %d %s", rec.Code, rec.Body)
	}
	recs, _ := f.st.Audit(context.Background(), 0)
	var got []string
	for _, r := range recs {
		if strings.HasPrefix(r.Action, "user_") && r.Action != "user_signed_in" {
			got = append(got, r.Action+" "+r.Target+" by "+r.Actor)
		}
	}
	want := "user_removed bob by operator ada (web),user_role bob by operator ada (web),user_added bob by operator ada (web)"
	if strings.Join(got, ",") != want {
		t.Fatalf("audit %v", got)
	}
	// Config and reload are the admin's; the reload is the backend's.
	if rec := f.do(req{method: "GET", path: "/api/v1/config", cookie: c}); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"reloadable":true`) {
		t.Fatalf("config: %d %s", rec.Code, rec.Body)
	}
	if got := post("/api/v1/config/reload", ``); got != 204 || len(f.be.calls) != 1 || f.be.calls[0].what != "reload" {
		t.Fatalf("reload: %d %+v", got, f.be.calls)
	}
}
