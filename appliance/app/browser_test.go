package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/globalsign/est"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

// sha256Sum is the SHA-256 of key's SubjectPublicKeyInfo.
func sha256Sum(key *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	sum := sha256.Sum256(der)
	return sum[:]
}

// screenshotDir is where the browser test leaves a picture of each page
// (dist/ is build output, kept out of git).
var screenshotDir = filepath.Join("..", "..", "dist", "screenshots")

// chromium finds Debian's chromium, or stops the test naming the package.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: install it (apt-get install chromium; make test does) to run the browser test")
	return ""
}

// TestBrowser drives the operator UI in headless Chromium as an operator
// would: sign in; a device without a manufacturer certificate (the
// globalsign EST client) waits; the operator approves it on the page and
// the device's retry gets its certificate; the operator revokes it on the
// page and openssl's OCSP query says revoked; a page on another site that
// posts an approval is refused; a viewer sees no buttons and the API
// refuses the viewer; an account locked by failed sign-ins stays locked
// with the right password; signing out ends the session.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	a, dir := startWithAccounts(t, map[string]string{"otto": "operator", "vera": "viewer", "lena": "operator", "ada": "admin"})
	ctx := context.Background()
	base := "https://" + a.Addr("web").String()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		// The appliance's own CA signs the UI's certificate.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The first call starts the browser; it must not have a timeout.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	page := func() string {
		v, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
		l, _ := chromedp.Run(bctx, chromedp.Location())
		return "at " + l + ":\n" + v
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("%s: %v (%s)", what, err, page())
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(c, a)
		if err != nil {
			t.Fatalf("%s: %v (%s)", what, err, page())
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	signIn := func(user, pw string) {
		t.Helper()
		run("sign in as "+user,
			chromedp.Navigate(base+"/login"),
			chromedp.WaitVisible(chromedp.ID("user")),
			chromedp.SendKeys(chromedp.ID("user"), user),
			chromedp.SendKeys(chromedp.ID("password"), pw),
			chromedp.Click(chromedp.ID("signin")),
		)
	}
	// waitText waits for sel to show want. A query that meets a page
	// being replaced (a navigation, a redirect) is asked again.
	waitText := func(what, sel, want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			c, cancel := context.WithTimeout(bctx, 5*time.Second)
			got, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(sel)))
			cancel()
			if err == nil && strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q does not contain %q (%v; %s)", what, got, want, err, page())
			}
		}
	}

	// Not signed in: the UI sends the browser to the sign-in page.
	run("open the UI", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	loc := get("location", chromedp.Location())
	if !strings.HasSuffix(loc, "/login") {
		t.Fatalf("without a session the UI is at %s", loc)
	}
	shot("sign-in")
	signIn("otto", "otto password 123")
	waitText("who", "#who", "otto (operator)")

	// A device without a manufacturer certificate waits.
	client := &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrFor(t, key, "cam7.studio.example.test")
	if _, err := client.Enroll(ctx, csr); err == nil {
		t.Fatal("enrolled without approval")
	}
	waiting, _ := a.store.ListPending(ctx, store.PendingWaiting)
	if len(waiting) != 1 {
		t.Fatalf("%d waiting", len(waiting))
	}
	id := waiting[0].ID
	run("the requests page", chromedp.Navigate(base+"/requests"))
	waitText("the request on the page", "#pending tbody", id)
	// What the operator compares with the device: its key's fingerprint.
	waitText("the key's fingerprint", "#req-"+id, fmt.Sprintf("SHA-256 %x", sha256Sum(key)))
	shot("requests")

	// On a phone's screen the page fits its width (wide tables scroll in
	// their own box).
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(base+"/requests"))
	waitText("the request on a phone", "#pending tbody", id)
	if over := get("the page's width", chromedp.Evaluate[string](`String(document.documentElement.scrollWidth - window.innerWidth)`)); over != "0" {
		t.Fatalf("on a phone the page is %s pixels wider than the screen", over)
	}
	shot("phone-requests")
	run("laptop", chromedp.EmulateViewport(1280, 900))

	// A page on another site posts an approval with the operator's
	// browser: refused (the SameSite cookie stays home, and there is no
	// CSRF token), and the request still waits.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/requests/decide?id=%s"><input name="decision" value="approve"></form><script>document.getElementById("f").submit()</script>`, base, id)
	}))
	defer evil.Close()
	run("the forged approval", chromedp.Navigate(evil.URL), chromedp.Sleep(time.Second))
	forged := get("the forged approval's answer", chromedp.Text(chromedp.CSS("body")))
	if p, _ := a.store.PendingByID(ctx, id); p.State != store.PendingWaiting {
		t.Fatalf("a cross-site POST decided the request: %s (page said %q)", p.State, forged)
	}
	if !strings.Contains(forged, "sign in") && !strings.Contains(forged, "refused") && !strings.Contains(forged, "CSRF") {
		t.Fatalf("the forged POST was answered %q", forged)
	}

	// The operator approves with the keyboard: the first Tab reaches the
	// skip link, then the row's Approve button takes focus and Enter
	// presses it. The device's retry gets its certificate.
	run("back to the requests", chromedp.Navigate(base+"/requests"))
	waitText("the request again", "#pending tbody", id)
	run("tab", chromedp.KeyEvent(kb.Tab))
	if f := get("the focus", chromedp.Evaluate[string](`document.activeElement.className`)); f != "skip" {
		t.Fatalf("the first Tab went to %q, not the skip link", f)
	}
	run("approve by keyboard", chromedp.Focus(chromedp.CSS(`#req-`+id+` button.approve`)), chromedp.KeyEvent(kb.Enter))
	waitText("the approval said", "#flash", "Approved 1 request(s)")
	waitText("nothing waits", "main", "No request is waiting")
	cert, err := client.Enroll(ctx, csr)
	if err != nil {
		t.Fatalf("the device's retry after the approval: %v", err)
	}
	serial := store.SerialKey(cert.SerialNumber)

	// The operator finds it by name, opens it and revokes it (a reason,
	// then the confirmation page); the page and openssl's OCSP query say
	// revoked.
	run("search", chromedp.Navigate(base+"/certificates"),
		chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "CAM7.studio.example.test"),
		chromedp.Click(chromedp.ID("search")))
	// The page before the search lists it too: wait for the search's own.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if l, err := chromedp.Run(bctx, chromedp.Location()); err == nil && strings.Contains(l, "name=CAM7") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the search did not load: %s", page())
		}
	}
	waitText("the search result", "#certificates tbody", serial)
	shot("certificates")
	run("the certificate", chromedp.Click(chromedp.Search(`//a[normalize-space()="`+serial+`"]`)))
	waitText("its OCSP answer", "#ocsp", "good")
	run("revoke", chromedp.Click(chromedp.ID("revoke")), chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.SetValue(chromedp.ID("reason"), "keyCompromise"))
	shot("revoke")
	run("confirm the revocation", chromedp.Click(chromedp.ID("confirm")))
	waitText("revoked on the page", "#status", "revoked")
	waitText("OCSP on the page", "#ocsp", "revoked (keyCompromise)")
	shot("certificate")
	issuerCert, _ := a.Authority().CACertificate("ecdsa-int-1")
	rootCert, _ := a.Authority().CACertificate("ecdsa-root-1")
	leaf := writePEM(t, filepath.Join(dir, "leaf.pem"), cert)
	issuer := writePEM(t, filepath.Join(dir, "int.pem"), issuerCert)
	chain := writePEM(t, filepath.Join(dir, "chain.pem"), issuerCert, rootCert)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := exec.Command("openssl", "ocsp", "-sha256", "-issuer", issuer, "-cert", leaf, "-url", "http://"+a.Addr("http").String()+"/ocsp", "-CAfile", chain).CombinedOutput()
		if err == nil && strings.Contains(string(out), leaf+": revoked") && strings.Contains(string(out), "Reason: keyCompromise") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OCSP after revoking on the page: %v\n%s", err, out)
		}
	}
	run("names", chromedp.Navigate(base+"/names"))
	waitText("the name bound", "#names tbody", "cam7.studio.example.test")
	shot("names")
	run("audit", chromedp.Navigate(base+"/audit?q="+serial))
	waitText("the revocation audited", "#audit tbody", "certificate_revoked")
	waitText("by whom", "#audit tbody", "operator otto (web)")
	shot("audit")
	run("dashboard", chromedp.Navigate(base+"/"))
	waitText("services", "#health", "store")
	shot("dashboard")

	// Signing out ends the session.
	run("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin")))
	run("the UI after signing out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("signin")))

	// A viewer sees a new request but no button to decide it, and the API
	// refuses the viewer's approval.
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := client.Enroll(ctx, csrFor(t, key2, "cam8.studio.example.test")); err == nil {
		t.Fatal("enrolled without approval")
	}
	waiting, _ = a.store.ListPending(ctx, store.PendingWaiting)
	if len(waiting) != 1 {
		t.Fatalf("%d waiting", len(waiting))
	}
	signIn("vera", "vera password 123")
	waitText("viewer", "#who", "vera (viewer)")
	run("the viewer's requests", chromedp.Navigate(base+"/requests"))
	waitText("the request for the viewer", "#pending tbody", waiting[0].ID)
	c, cancel := context.WithTimeout(bctx, 30*time.Second)
	nButtons, err1 := chromedp.Run(c, chromedp.Evaluate[int](`document.querySelectorAll("main button, main input[type=checkbox]").length`))
	status, err2 := chromedp.Run(c, chromedp.Evaluate[int](fmt.Sprintf(`fetch("/api/v1/session").then(r => r.json()).then(s =>
		fetch("/api/v1/requests/%s/approve", {method: "POST", headers: {"X-CSRF-Token": s.csrf}})).then(r => r.status)`, waiting[0].ID), chromedp.EvalAwaitPromise))
	cancel()
	if err1 != nil || err2 != nil {
		t.Fatalf("the viewer's page: %v %v", err1, err2)
	}
	if nButtons != 0 || status != 403 {
		t.Fatalf("the viewer has %d buttons, and the API answered the viewer's approval %d", nButtons, status)
	}
	shot("requests-viewer")
	run("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin")))

	// The admin rolls the ECDSA intermediate over from the CA page,
	// through the confirmation that says what will happen; the page
	// then lists the new generation as active. Then the config and
	// users pages.
	signIn("ada", "ada password 123")
	waitText("admin", "#who", "ada (admin)")
	run("the CA page", chromedp.Navigate(base+"/ca"))
	waitText("the generations", "#gen-ecdsa", "ecdsa-int-1")
	shot("ca")
	run("roll over", chromedp.Click(chromedp.ID("roll-ecdsa-intermediate")), chromedp.WaitVisible(chromedp.ID("confirm")))
	waitText("what will happen", "#steps", "retires when its last certificate expires")
	shot("rollover")
	run("confirm the rollover", chromedp.Click(chromedp.ID("confirm")))
	waitText("the rollover said", "#flash", "Rollover made")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		c, cancel := context.WithTimeout(bctx, 10*time.Second)
		got := ""
		err := chromedp.Do(c, chromedp.Reload())
		if err == nil {
			got, err = chromedp.Run(c, chromedp.Text(chromedp.ID("gen-ecdsa")))
		}
		cancel()
		if err == nil && strings.Contains(got, "ecdsa-int-2") && strings.Contains(got, "retiring") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new intermediate is not listed: %q %v", got, err)
		}
	}
	if g, ok := a.Authority().CACertificate("ecdsa-int-2"); !ok || g == nil {
		t.Fatal("the CA has no ecdsa-int-2 after the rollover")
	}
	run("config", chromedp.Navigate(base+"/config"), chromedp.WaitVisible(chromedp.ID("yaml")))
	shot("config")
	run("users", chromedp.Navigate(base+"/users"), chromedp.WaitVisible(chromedp.ID("users")))
	waitText("the accounts", "#users", "lena")
	shot("users")
	run("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin")))

	// Five wrong passwords lock lena; the right one is then refused too.
	// (The address's backoff answers 429 between attempts: wait it out.)
	attempt := func(pw string) string {
		t.Helper()
		for {
			signIn("lena", pw)
			// The answer's page carries the message as #error; the page
			// the form was on has none.
			run("sign-in answer", chromedp.WaitVisible(chromedp.ID("error")))
			msg := get("sign-in answer", chromedp.Text(chromedp.ID("error")))
			if !strings.Contains(msg, "Too many failed sign-ins") {
				return msg
			}
			time.Sleep(time.Second)
		}
	}
	for i := range auth.AccountFailures {
		if msg := attempt(fmt.Sprintf("wrong password %d", i)); !strings.Contains(msg, "wrong name or password") {
			t.Fatalf("failure %d: %q", i, msg)
		}
	}
	if msg := attempt("lena password 123"); !strings.Contains(msg, "wrong name or password") {
		t.Fatalf("the locked account opened: %q", msg)
	}
	shot("sign-in-refused")
	if u, _ := a.store.User(ctx, "lena"); u.LockedUntil.Before(time.Now()) {
		t.Fatalf("lena is not locked: %+v", u)
	}
}
