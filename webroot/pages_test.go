package webroot

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPages renders every page for an admin and a viewer: what each
// shows, what only a role above a viewer may press, and that what a
// device sent is shown as text.
func TestPages(t *testing.T) {
	f := newFixture(t)
	f.addUser("ada", "admin", "admin password 12")
	f.addUser("vera", "viewer", "viewer password 1")
	ac, acsrf := f.login("ada", "admin password 12")
	vc, _ := f.login("vera", "viewer password 1")
	get := func(cookie, path string, want int) string {
		t.Helper()
		rec := f.do(req{method: "GET", path: path, cookie: cookie})
		if rec.Code != want {
			t.Fatalf("GET %s: %d, want %d: %s", path, rec.Code, want, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: %s", path, ct)
		}
		return rec.Body.String()
	}
	has := func(page, body string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", page, w)
			}
		}
	}
	lacks := func(page, body string, unwanted ...string) {
		t.Helper()
		for _, w := range unwanted {
			if strings.Contains(body, w) {
				t.Errorf("%s has %q", page, w)
			}
		}
	}

	d := get(ac, "/", 200)
	has("dashboard for an admin", d, "disk slow", "(3 times in a row)", `<span class="muted">store:</span>`)
	has("dashboard", d, `<meta http-equiv="refresh" content="30; url=/?auto=1">`, "rollover due", "failing</span> dns: not serving", `id="issued-24h">17<`,
		`id="refused-24h">3<`, "past half its validity", "the store is slow &lt;b&gt;", `href="/users"`, `id="pending-count">1<`)
	lacks("dashboard", d, "<script>", "<i>x</i>")
	has("dashboard's appliances", d, `id="appliances"`, "est-a.studio.example.test <span class=\"muted\">(this one)</span>", "&lt;i&gt;x&lt;/i&gt;",
		`<span class="bad">no</span>: addresses: give its addresses`)

	r := get(ac, "/requests", 200)
	has("requests", r, "CN=&lt;script&gt;alert(1)&lt;/script&gt;", "SHA-256 ab12", "held by vendor X serial 9",
		"waiting 1h 30m", "no client certificate", `formaction="/requests/decide?id=r1"`, `id="approve-selected"`)
	lacks("requests", r, "<script>")
	rv := get(vc, "/requests", 200)
	has("requests for a viewer", rv, "CN=&lt;script&gt;")
	lacks("requests for a viewer", rv, "formaction", `name="decision"`, `type="checkbox"`)
	lacks("dashboard for a viewer", get(vc, "/", 200), `href="/users"`, `href="/config"`, "disk slow")
	if rec := f.do(req{method: "GET", path: "/api/v1/status", cookie: vc}); strings.Contains(rec.Body.String(), "disk slow") {
		t.Error("the status API gives a viewer the details of a warning")
	}
	get(ac, "/audit?q="+strings.Repeat("x", 201), 400)

	c := get(ac, "/certificates?name=cam1*&status=valid", 200)
	has("certificates", c, `href="/certificates/0a1b"`, `id="next"`, "before=77", "name=cam1%2A", "status=valid")
	get(ac, "/certificates?status=bogus", 400)

	cert := get(ac, "/certificates/0a1b", 200)
	has("certificate", cert, "/api/v1/certificates/0a1b/pem?chain=1", `href="/certificates/0a1b/revoke"`, "-----BEGIN CERTIFICATE-----")
	lacks("certificate for a viewer", get(vc, "/certificates/0a1b", 200), "/revoke")
	get(ac, "/certificates/ffff", 404)
	has("revoke", get(ac, "/certificates/0a1b/revoke", 200), `<option>keyCompromise</option>`, `name="csrf" value="`+acsrf+`"`)

	has("ca", get(ac, "/ca", 200), "ecdsa-root-1", `href="/ca/rollover?hierarchy=ecdsa&amp;kind=intermediate"`)
	lacks("ca for a viewer", get(vc, "/ca", 200), "/ca/rollover")
	has("rollover", get(ac, "/ca/rollover?hierarchy=ecdsa&kind=intermediate", 200), "a new intermediate", `id="confirm"`, `name="from" value="ecdsa-int-1"`)
	root := get(ac, "/ca/rollover?hierarchy=ecdsa&kind=root", 200)
	has("root rollover", root, "Not possible here: not in the test")
	lacks("root rollover", root, `id="confirm"`)
	get(ac, "/ca/rollover?hierarchy=nope&kind=root", 400)

	has("config", get(ac, "/config", 200), `id="reload"`, "domain: studio.example.test")
	has("users", get(ac, "/users", 200), "ada (you)", `id="add-user"`, `name="confirm" value="yes" required`)
	has("names", get(ac, "/names", 200), "no name is bound")
	has("audit", get(ac, "/audit?q=ada", 200), "user_signed_in")

	// Forms: approve two requests at once, and the flash says so.
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		rec := f.do(req{method: "POST", path: path, cookie: ac, form: form, origin: "https://ui.example"})
		return rec.Result()
	}
	form := url.Values{"csrf": {acsrf}, "id": {"r1", "r2"}, "decision": {"approve"}}
	resp := post("/requests/decide", form)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/requests?done=approved&n=2" {
		t.Fatalf("decide: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	has("requests after approving", get(ac, "/requests?done=approved&n=2", 200), "Approved 2 request(s)")
	lacks("a forged flash", get(ac, "/requests?done=<b>evil</b>&n=<i>", 200), "evil", "<i>")
	lacks("another page's flash", get(ac, "/certificates/0a1b?done=approved", 200), "Approved")
	has("a certificate's flash", get(ac, "/certificates/0a1b?done=revoked", 200), "Revoked.")
	// A row's button decides its row only, whatever is ticked.
	f.be.calls = nil
	post("/requests/decide?id=r9", url.Values{"csrf": {acsrf}, "id": {"r1"}, "decision": {"deny"}})
	if len(f.be.calls) != 1 || f.be.calls[0].what != "deny" || f.be.calls[0].arg != "r9" {
		t.Fatalf("row button: %+v", f.be.calls)
	}
	if resp := post("/requests/decide", url.Values{"csrf": {acsrf}, "decision": {"approve"}}); resp.StatusCode != 400 {
		t.Fatalf("nothing selected: %d", resp.StatusCode)
	}
	// Removing an account needs the box ticked.
	if resp := post("/users/vera/remove", url.Values{"csrf": {acsrf}}); resp.StatusCode != 400 {
		t.Fatalf("remove without confirming: %d", resp.StatusCode)
	}
	if resp := post("/users/vera/remove", url.Values{"csrf": {acsrf}, "confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove: %d", resp.StatusCode)
	}
	if resp := post("/users", url.Values{"csrf": {acsrf}, "name": {"carl"}, "role": {"viewer"}, "password": {"carl password 12"}, "password2": {"carl password 13"}}); resp.StatusCode != 400 {
		t.Fatalf("two passwords: %d", resp.StatusCode)
	}
	if resp := post("/users", url.Values{"csrf": {acsrf}, "name": {"carl"}, "role": {"viewer"}, "password": {"carl password 12"}, "password2": {"carl password 12"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add carl: %d", resp.StatusCode)
	}
	has("users", get(ac, "/users?done=added", 200), "Account added.", `id="user-carl"`)
	lacks("users", get(ac, "/users", 200), `id="user-vera"`)
	// A rollover names the generation it replaces: a second press, after
	// the first replaced it, does nothing.
	if resp := post("/ca/rollover", url.Values{"csrf": {acsrf}, "hierarchy": {"ecdsa"}, "kind": {"intermediate"}, "from": {"ecdsa-int-0"}}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a stale rollover: %d", resp.StatusCode)
	}
	if resp := post("/ca/rollover", url.Values{"csrf": {acsrf}, "hierarchy": {"ecdsa"}, "kind": {"intermediate"}, "from": {"ecdsa-int-1"}}); resp.StatusCode != http.StatusSeeOther ||
		f.be.calls[len(f.be.calls)-1].arg != "ecdsa intermediate" {
		t.Fatalf("rollover: %d %+v", resp.StatusCode, f.be.calls)
	}
}
