package webroot

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

// The pages are rendered on the server from html/template, and every
// action is a form posted with the session's CSRF token: they work
// without JavaScript, which the Content-Security-Policy would confine to
// this origin anyway.

// page is what every page template gets.
type page struct {
	Title string
	Nav   string
	P     *Principal
	// Flash says what the last action did; Error why it failed.
	Flash, Error string
	Now          time.Time
	Data         any
}

func (p page) CanOperate() bool { return p.P != nil && p.P.Role.Allows(auth.Operator) }
func (p page) IsAdmin() bool    { return p.P != nil && p.P.Role.Allows(auth.Admin) }
func (p page) SignedIn() bool   { return p.P != nil && p.P.session != nil }

// navItems are the pages in the navigation bar, with the least role
// that sees them.
var navItems = []struct {
	Key, Path, Label string
	Role             auth.Role
}{
	{"dashboard", "/", "Dashboard", auth.Viewer},
	{"requests", "/requests", "Requests", auth.Viewer},
	{"certificates", "/certificates", "Certificates", auth.Viewer},
	{"names", "/names", "Names", auth.Viewer},
	{"ca", "/ca", "CA", auth.Viewer},
	{"audit", "/audit", "Audit", auth.Viewer},
	{"config", "/config", "Config", auth.Admin},
	{"users", "/users", "Users", auth.Admin},
}

func parsePages() (*template.Template, error) {
	utc := func(t time.Time) time.Time { return t.UTC() }
	funcs := template.FuncMap{
		"time": func(v any) string {
			var t time.Time
			switch v := v.(type) {
			case time.Time:
				t = v
			case *time.Time:
				if v != nil {
					t = *v
				}
			}
			if t.IsZero() {
				return ""
			}
			return utc(t).Format("2006-01-02 15:04:05 UTC")
		},
		"day": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return utc(t).Format("2006-01-02")
		},
		"since": func(now, t time.Time) string { return span(now.Sub(t)) },
		"until": func(now, t time.Time) string {
			if d := t.Sub(now); d > 0 {
				return "in " + span(d)
			}
			return span(now.Sub(t)) + " ago"
		},
		"join":    func(s []string) string { return strings.Join(s, ", ") },
		"percent": func(f float64) string { return fmt.Sprintf("%.0f%%", math.Floor(f*100)) },
		"nav": func(p page) any {
			var out []map[string]any
			for _, n := range navItems {
				if p.P != nil && p.P.Role.Allows(n.Role) {
					out = append(out, map[string]any{"Path": n.Path, "Label": n.Label, "Current": n.Key == p.Nav})
				}
			}
			return out
		},
		// query is a URL's query string from pairs, values escaped by
		// url.Values (so it can be trusted as a URL part).
		"query": func(kv ...string) template.URL {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					v.Set(kv[i], kv[i+1])
				}
			}
			return template.URL(v.Encode())
		},
		"reasons": func() []string { return revocationReasons },
		"roles":   func() []auth.Role { return []auth.Role{auth.Viewer, auth.Operator, auth.Admin} },
		"path":    url.PathEscape,
		// limit is a page size for a link: empty for the default.
		"limit": func(n int) string {
			if n <= 0 {
				return ""
			}
			return strconv.Itoa(n)
		},
		"serial": store.SerialKey,
	}
	t := template.New("").Funcs(funcs)
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return t.ParseFS(files, names...)
}

// revocationReasons are the RFC 5280 reasons an operator may give.
var revocationReasons = []string{"unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn"}

// span writes a duration as an operator reads it: its two largest units.
func span(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// flashes are the messages an action's redirect names by code, each on
// the page the action returns to: a code, not text, travels in the URL,
// so nobody can make a page say something of their own, nor a page say
// what another page's action did.
var flashes = map[string]map[string]string{
	"requests": {
		"approved": "Approved %s request(s): the device gets its certificate when it asks again.",
		"denied":   "Denied %s request(s).",
	},
	"certificates": {"revoked": "Revoked. OCSP answers revoked now; the CRL follows at once."},
	"names":        {"released": "Released: another device may take the name now."},
	"ca":           {"rolled": "Rollover made: see the generations below."},
	"config":       {"reloaded": "The configuration was read again and applied."},
	"users": {
		"added":    "Account added.",
		"role":     "Role changed.",
		"unlocked": "Account unlocked.",
		"removed":  "Account removed.",
	},
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, pg page) {
	pg.Now = s.o.Clock()
	if pg.Flash == "" {
		if f, ok := flashes[pg.Nav][r.URL.Query().Get("done")]; ok {
			n := r.URL.Query().Get("n")
			if _, err := strconv.Atoi(n); err != nil {
				n = "the"
			}
			if strings.Contains(f, "%s") {
				f = fmt.Sprintf(f, n)
			}
			pg.Flash = f
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := s.pages.ExecuteTemplate(w, name, pg); err != nil {
		s.o.Logger.Warn("rendering a page", "page", name, "err", err)
	}
}

// failPage shows why a page or an action failed, with the status an API
// client would get.
func (s *Server) failPage(w http.ResponseWriter, r *http.Request, p *Principal, nav string, err error) {
	code := http.StatusConflict
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, errUnavailable):
		code = http.StatusServiceUnavailable
	}
	s.render(w, r, code, "message", page{Title: "Not done", Nav: nav, P: p, Error: err.Error()})
}

var errUnavailable = errors.New("the store is unavailable")

func (s *Server) dashboardPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	st, err := s.status(r, p)
	if err != nil {
		s.failPage(w, r, p, "dashboard", fmt.Errorf("%w: %v", errUnavailable, err))
		return
	}
	s.render(w, r, http.StatusOK, "dashboard", page{Title: "Dashboard", Nav: "dashboard", P: p, Data: st})
}

func (s *Server) requestsPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	pending, err := s.o.Backend.Pending(r.Context())
	if err != nil {
		s.failPage(w, r, p, "requests", fmt.Errorf("%w: %v", errUnavailable, err))
		return
	}
	s.render(w, r, http.StatusOK, "requests", page{Title: "Requests", Nav: "requests", P: p, Data: pending})
}

// decideForm approves or denies the requests ticked on the page.
func (s *Server) decideForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := r.ParseForm(); err != nil {
		s.failPage(w, r, p, "requests", fmt.Errorf("%v: %w", err, ErrInvalid))
		return
	}
	// A row's own button names its request in the URL; the buttons under
	// the table decide the rows ticked.
	ids := r.URL.Query()["id"]
	if len(ids) == 0 {
		ids = r.PostForm["id"]
	}
	approve := r.PostFormValue("decision") == "approve"
	if !approve && r.PostFormValue("decision") != "deny" {
		s.failPage(w, r, p, "requests", fmt.Errorf("choose approve or deny: %w", ErrInvalid))
		return
	}
	if len(ids) == 0 {
		s.failPage(w, r, p, "requests", fmt.Errorf("no request was selected: %w", ErrInvalid))
		return
	}
	for i, id := range ids {
		if err := s.o.Backend.Decide(r.Context(), id, approve, webActor(p), p.Remote); err != nil {
			if i > 0 {
				err = fmt.Errorf("%d decided, then request %s: %w", i, id, err)
			}
			s.failPage(w, r, p, "requests", err)
			return
		}
	}
	done := "denied"
	if approve {
		done = "approved"
	}
	http.Redirect(w, r, "/requests?done="+done+"&n="+strconv.Itoa(len(ids)), http.StatusSeeOther)
}

func webActor(p *Principal) string { return "operator " + p.User + " (web)" }

// certificatesView is the certificates page.
type certificatesView struct {
	Q       CertificateSearch
	List    *CertificateList
	Issuers []string
}

func searchFrom(r *http.Request) CertificateSearch {
	q := r.URL.Query()
	lim, _ := strconv.Atoi(q.Get("limit"))
	return CertificateSearch{Name: strings.TrimSpace(q.Get("name")), Serial: strings.TrimSpace(q.Get("serial")), Identity: q.Get("identity"),
		Issuer: q.Get("issuer"), Status: q.Get("status"), Before: q.Get("before"), Limit: lim}
}

func (s *Server) certificatesPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	q := searchFrom(r)
	list, err := s.o.Backend.Certificates(r.Context(), q)
	if err != nil {
		s.failPage(w, r, p, "certificates", err)
		return
	}
	v := certificatesView{Q: q, List: list}
	if c, err := s.o.Backend.CA(r.Context()); err == nil {
		for _, h := range c.Hierarchies {
			for _, g := range h.Generations {
				if g.Role == "intermediate" || g.Role == "root" {
					v.Issuers = append(v.Issuers, g.ID)
				}
			}
		}
	}
	s.render(w, r, http.StatusOK, "certificates", page{Title: "Certificates", Nav: "certificates", P: p, Data: v})
}

func (s *Server) certificatePage(w http.ResponseWriter, r *http.Request, p *Principal) {
	c, err := s.o.Backend.Certificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.failPage(w, r, p, "certificates", err)
		return
	}
	s.render(w, r, http.StatusOK, "certificate", page{Title: "Certificate " + c.Serial, Nav: "certificates", P: p, Data: c})
}

func (s *Server) revokePage(w http.ResponseWriter, r *http.Request, p *Principal) {
	c, err := s.o.Backend.Certificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.failPage(w, r, p, "certificates", err)
		return
	}
	s.render(w, r, http.StatusOK, "revoke", page{Title: "Revoke " + c.Serial, Nav: "certificates", P: p, Data: c})
}

func (s *Server) revokeForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	serial := r.PathValue("serial")
	if err := s.o.Backend.Revoke(r.Context(), serial, r.PostFormValue("reason"), webActor(p), p.Remote); err != nil {
		s.failPage(w, r, p, "certificates", err)
		return
	}
	http.Redirect(w, r, "/certificates/"+url.PathEscape(serial)+"?done=revoked", http.StatusSeeOther)
}

type namesView struct {
	Name, Identity string
	Bindings       []*store.NameBinding
	// More: there are more than namesShown; a search narrows them.
	More bool
}

const namesShown = 500

func (s *Server) namesPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	v := namesView{Name: strings.TrimSpace(r.URL.Query().Get("name")), Identity: r.URL.Query().Get("identity")}
	bs, err := s.o.Accounts.NameBindings(r.Context(), store.BindingFilter{Name: v.Name, Holder: v.Identity, Limit: namesShown + 1})
	if err != nil {
		s.failPage(w, r, p, "names", fmt.Errorf("%w: %v", errUnavailable, err))
		return
	}
	if len(bs) > namesShown {
		bs, v.More = bs[:namesShown], true
	}
	v.Bindings = bs
	s.render(w, r, http.StatusOK, "names", page{Title: "Names", Nav: "names", P: p, Data: v})
}

func (s *Server) releasePage(w http.ResponseWriter, r *http.Request, p *Principal) {
	name := r.PathValue("name")
	bs, err := s.o.Accounts.NameBindings(r.Context(), store.BindingFilter{Name: name, Limit: 1})
	if err != nil || len(bs) == 0 {
		s.failPage(w, r, p, "names", fmt.Errorf("%s is not bound: %w", name, ErrNotFound))
		return
	}
	s.render(w, r, http.StatusOK, "release", page{Title: "Release " + name, Nav: "names", P: p, Data: bs[0]})
}

func (s *Server) releaseForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.o.Backend.ReleaseName(r.Context(), r.PathValue("name"), webActor(p), p.Remote); err != nil {
		s.failPage(w, r, p, "names", err)
		return
	}
	http.Redirect(w, r, "/names?done=released", http.StatusSeeOther)
}

func (s *Server) caPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	v, err := s.o.Backend.CA(r.Context())
	if err != nil {
		s.failPage(w, r, p, "ca", fmt.Errorf("%w: %v", errUnavailable, err))
		return
	}
	s.render(w, r, http.StatusOK, "ca", page{Title: "Certificate authority", Nav: "ca", P: p, Data: v})
}

func (s *Server) rolloverPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	plan, err := s.o.Backend.RolloverPlan(r.Context(), r.URL.Query().Get("hierarchy"), r.URL.Query().Get("kind"))
	if err != nil {
		s.failPage(w, r, p, "ca", err)
		return
	}
	s.render(w, r, http.StatusOK, "rollover", page{Title: "Rollover", Nav: "ca", P: p, Data: plan})
}

func (s *Server) rolloverForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if _, err := s.o.Backend.Rollover(r.Context(), r.PostFormValue("hierarchy"), r.PostFormValue("kind"), r.PostFormValue("from"), webActor(p), p.Remote); err != nil {
		s.failPage(w, r, p, "ca", err)
		return
	}
	http.Redirect(w, r, "/ca?done=rolled", http.StatusSeeOther)
}

type auditView struct {
	Text    string
	Records []*store.AuditRecord
	Next    int64
}

const auditPage = 100

// maxSearchText bounds the text an audit search looks for.
const maxSearchText = 200

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	v := auditView{Text: r.URL.Query().Get("q")}
	if len(v.Text) > maxSearchText {
		s.failPage(w, r, p, "audit", fmt.Errorf("search for at most %d characters: %w", maxSearchText, ErrInvalid))
		return
	}
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	recs, err := s.o.Accounts.SearchAudit(r.Context(), store.AuditQuery{Text: v.Text, Before: before, Limit: auditPage})
	if err != nil {
		s.failPage(w, r, p, "audit", fmt.Errorf("%w: %v", errUnavailable, err))
		return
	}
	if len(recs) > auditPage {
		recs = recs[:auditPage]
		v.Next = recs[auditPage-1].ID
	}
	v.Records = recs
	s.render(w, r, http.StatusOK, "audit", page{Title: "Audit", Nav: "audit", P: p, Data: v})
}

func (s *Server) configPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	v, err := s.o.Backend.Config(r.Context())
	if err != nil {
		s.failPage(w, r, p, "config", err)
		return
	}
	s.render(w, r, http.StatusOK, "config", page{Title: "Configuration", Nav: "config", P: p, Data: v})
}

func (s *Server) reloadForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.o.Backend.Reload(r.Context(), webActor(p), p.Remote); err != nil {
		s.failPage(w, r, p, "config", err)
		return
	}
	http.Redirect(w, r, "/config?done=reloaded", http.StatusSeeOther)
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, p *Principal) {
	users, err := s.users(r)
	if err != nil {
		s.failPage(w, r, p, "users", fmt.Errorf("%w: %v", errUnavailable, err))
		return
	}
	s.render(w, r, http.StatusOK, "users", page{Title: "Users", Nav: "users", P: p, Data: users})
}

func (s *Server) userAddForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	name, role, pw := r.PostFormValue("name"), r.PostFormValue("role"), r.PostFormValue("password")
	if pw != r.PostFormValue("password2") {
		s.failPage(w, r, p, "users", fmt.Errorf("the two passwords differ: %w", ErrInvalid))
		return
	}
	if err := s.addUser(r, p, name, role, pw); err != nil {
		s.failPage(w, r, p, "users", err)
		return
	}
	http.Redirect(w, r, "/users?done=added", http.StatusSeeOther)
}

func (s *Server) userRoleForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.setRole(r, p, r.PathValue("name"), r.PostFormValue("role")); err != nil {
		s.failPage(w, r, p, "users", err)
		return
	}
	http.Redirect(w, r, "/users?done=role", http.StatusSeeOther)
}

func (s *Server) userUnlockForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.unlockUser(r, p, r.PathValue("name")); err != nil {
		s.failPage(w, r, p, "users", err)
		return
	}
	http.Redirect(w, r, "/users?done=unlocked", http.StatusSeeOther)
}

func (s *Server) userRemoveForm(w http.ResponseWriter, r *http.Request, p *Principal) {
	if r.PostFormValue("confirm") != "yes" {
		s.failPage(w, r, p, "users", fmt.Errorf("tick the box to confirm the removal: %w", ErrInvalid))
		return
	}
	if err := s.removeUser(r, p, r.PathValue("name")); err != nil {
		s.failPage(w, r, p, "users", err)
		return
	}
	http.Redirect(w, r, "/users?done=removed", http.StatusSeeOther)
}
