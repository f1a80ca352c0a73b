package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	"github.com/globalsign/est"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

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
	a, dir := startWithAccounts(t, map[string]string{"otto": "operator", "vera": "viewer", "lena": "operator"})
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
	reload := func() { run("reload", chromedp.Reload()) }

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
	reload()
	waitText("the request on the page", "#pending tbody", id)
	shot("dashboard-pending")

	// A page on another site posts an approval with the operator's
	// browser: refused (the SameSite cookie stays home, and there is no
	// CSRF token), and the request still waits.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/api/v1/requests/%s/approve"></form><script>document.getElementById("f").submit()</script>`, base, id)
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

	// The operator approves on the page; the device's retry gets its
	// certificate.
	run("back to the UI", chromedp.Navigate(base+"/"))
	waitText("the request again", "#pending tbody", id)
	run("approve", chromedp.Click(chromedp.CSS(`#pending tbody button.approve`)))
	waitText("the request decided", "#pending tbody", "none")
	cert, err := client.Enroll(ctx, csr)
	if err != nil {
		t.Fatalf("the device's retry after the approval: %v", err)
	}
	serial := store.SerialKey(cert.SerialNumber)

	// The operator revokes it on the page (choose the reason, press
	// twice); openssl's OCSP query says revoked.
	reload()
	waitText("the certificate on the page", "#certificates tbody", serial)
	row := fmt.Sprintf(`//table[@id="certificates"]//tr[td[1][normalize-space()="%s"]]`, serial)
	run("revoke",
		chromedp.SetValue(chromedp.Search(row+`//select`), "keyCompromise"),
		chromedp.Click(chromedp.Search(row+`//button`)),
		chromedp.Click(chromedp.Search(row+`//button`)),
	)
	shot("dashboard-revoked")
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
	waitText("the certificate revoked on the page", "#certificates tbody", "revoked")

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
	waitText("the request for the viewer", "#pending tbody", waiting[0].ID)
	c, cancel := context.WithTimeout(bctx, 30*time.Second)
	nButtons, err1 := chromedp.Run(c, chromedp.Evaluate[int](`document.querySelectorAll("#pending button, #certificates button").length`))
	status, err2 := chromedp.Run(c, chromedp.Evaluate[int](fmt.Sprintf(`fetch("/api/v1/requests/%s/approve", {method: "POST", headers: {"X-CSRF-Token": session.csrf}}).then(r => r.status)`, waiting[0].ID), chromedp.EvalAwaitPromise))
	cancel()
	if err1 != nil || err2 != nil {
		t.Fatalf("the viewer's page: %v %v", err1, err2)
	}
	if nButtons != 0 || status != 403 {
		t.Fatalf("the viewer has %d buttons, and the API answered the viewer's approval %d", nButtons, status)
	}
	shot("dashboard-viewer")
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
