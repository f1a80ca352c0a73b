package webroot

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

// Accounts is what sign-in needs from the store (store.Store has it).
type Accounts interface {
	CountUsers(ctx context.Context) (int, error)
	User(ctx context.Context, name string) (*store.User, error)
	Users(ctx context.Context) ([]*store.User, error)
	LoginFailed(ctx context.Context, name string, at time.Time, lockAfter int, lockFor time.Duration, remote string) (*store.User, error)
	LoginSucceeded(ctx context.Context, name string, at time.Time, rehash string, sess *store.Session) error
	Session(ctx context.Context, tokenHash []byte) (*store.Session, error)
	TouchSession(ctx context.Context, tokenHash []byte, at time.Time) error
	DeleteSession(ctx context.Context, tokenHash []byte, audit *store.AuditRecord) error
	ExpireSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error)
	Audit(ctx context.Context, limit int) ([]*store.AuditRecord, error)
	SearchAudit(ctx context.Context, q store.AuditQuery) ([]*store.AuditRecord, error)
	PutUser(ctx context.Context, u *store.User, audit *store.AuditRecord) error
	UpdateUser(ctx context.Context, name string, up store.UserUpdate, at time.Time, audit *store.AuditRecord) (*store.User, error)
	DeleteUser(ctx context.Context, name string, audit *store.AuditRecord) error
	NameBindings(ctx context.Context, f store.BindingFilter) ([]*store.NameBinding, error)
}

// Errors a Backend returns that the API maps to 4xx.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid request")
)

// Options configure the UI.
type Options struct {
	Accounts Accounts
	Backend  Backend
	Logger   *slog.Logger
	Clock    func() time.Time
	// Idle and Absolute end sessions: unused for Idle (default 30
	// minutes), or opened Absolute ago (default 12 hours).
	Idle, Absolute time.Duration
	// Hash are the argon2id costs of new hashes (default auth.Default).
	Hash auth.Params
}

// SessionCookie is the session's cookie. The __Host- prefix makes
// browsers accept it only from this origin over HTTPS, for every path.
const SessionCookie = "__Host-nmos-certs-session"

// Server is the operator UI: sign-in, pages and /api/v1.
type Server struct {
	o       Options
	limiter *auth.Limiter
	// verify bounds concurrent argon2id verifications (64 MiB each), so
	// that a flood of sign-ins cannot exhaust memory.
	verify chan struct{}
	mux    *http.ServeMux
	routes []Route
	pages  *template.Template
}

// Route is one endpoint of the UI and the least role that may use it.
// Every route has a role: a table test fails when one has none.
type Route struct {
	Method, Pattern string
	Role            auth.Role // "" only for the sign-in page itself
	Handler         func(http.ResponseWriter, *http.Request, *Principal)
}

// Principal is who makes a request.
type Principal struct {
	User    string
	Role    auth.Role
	CSRF    string
	Remote  string
	session []byte // token hash; nil for a loopback client before any account exists
}

// New builds the UI.
func New(o Options) (*Server, error) {
	if o.Accounts == nil || o.Backend == nil {
		return nil, errors.New("webroot: Accounts and Backend are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Idle <= 0 {
		o.Idle = 30 * time.Minute
	}
	if o.Absolute <= 0 {
		o.Absolute = 12 * time.Hour
	}
	if o.Hash == (auth.Params{}) {
		o.Hash = auth.Default
	}
	s := &Server{o: o, limiter: auth.NewLimiter(o.Clock), verify: make(chan struct{}, 2), mux: http.NewServeMux()}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.routes = s.table()
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Pattern, s.guard(rt))
	}
	return s, nil
}

// Routes returns the route table.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

func (s *Server) table() []Route {
	static := http.FileServerFS(FS())
	serveStatic := func(w http.ResponseWriter, r *http.Request, _ *Principal) { static.ServeHTTP(w, r) }
	return []Route{
		{"GET", "/login", "", s.loginPage},
		{"POST", "/login", "", s.loginPost},
		{"GET", "/style.css", "", serveStatic},
		{"POST", "/logout", auth.Viewer, s.logout},

		// Pages, and the forms they post.
		{"GET", "/{$}", auth.Viewer, s.dashboardPage},
		{"GET", "/requests", auth.Viewer, s.requestsPage},
		{"POST", "/requests/decide", auth.Operator, s.decideForm},
		{"GET", "/certificates", auth.Viewer, s.certificatesPage},
		{"GET", "/certificates/{serial}", auth.Viewer, s.certificatePage},
		{"GET", "/certificates/{serial}/revoke", auth.Operator, s.revokePage},
		{"POST", "/certificates/{serial}/revoke", auth.Operator, s.revokeForm},
		{"GET", "/names", auth.Viewer, s.namesPage},
		{"GET", "/names/{name}/release", auth.Operator, s.releasePage},
		{"POST", "/names/{name}/release", auth.Operator, s.releaseForm},
		{"GET", "/ca", auth.Viewer, s.caPage},
		{"GET", "/ca/rollover", auth.Admin, s.rolloverPage},
		{"POST", "/ca/rollover", auth.Admin, s.rolloverForm},
		{"GET", "/audit", auth.Viewer, s.auditPage},
		{"GET", "/config", auth.Admin, s.configPage},
		{"POST", "/config/reload", auth.Admin, s.reloadForm},
		{"GET", "/users", auth.Admin, s.usersPage},
		{"POST", "/users", auth.Admin, s.userAddForm},
		{"POST", "/users/{name}/role", auth.Admin, s.userRoleForm},
		{"POST", "/users/{name}/unlock", auth.Admin, s.userUnlockForm},
		{"POST", "/users/{name}/remove", auth.Admin, s.userRemoveForm},

		// The API under them.
		{"GET", "/api/v1/session", auth.Viewer, s.apiSession},
		{"GET", "/api/v1/status", auth.Viewer, s.apiStatus},
		{"GET", "/api/v1/audit", auth.Viewer, s.apiAudit},
		{"GET", "/api/v1/requests", auth.Viewer, s.apiPending},
		{"POST", "/api/v1/requests/{id}/approve", auth.Operator, s.apiDecide(true)},
		{"POST", "/api/v1/requests/{id}/deny", auth.Operator, s.apiDecide(false)},
		{"GET", "/api/v1/certificates", auth.Viewer, s.apiCertificates},
		{"GET", "/api/v1/certificates/{serial}", auth.Viewer, s.apiCertificate},
		{"GET", "/api/v1/certificates/{serial}/pem", auth.Viewer, s.apiCertificatePEM},
		{"POST", "/api/v1/certificates/{serial}/revoke", auth.Operator, s.apiRevoke},
		{"GET", "/api/v1/names", auth.Viewer, s.apiNames},
		{"POST", "/api/v1/names/{name}/release", auth.Operator, s.apiRelease},
		{"GET", "/api/v1/ca", auth.Viewer, s.apiCA},
		{"GET", "/api/v1/ca/rollover", auth.Admin, s.apiRolloverPlan},
		{"POST", "/api/v1/ca/rollover", auth.Admin, s.apiRollover},
		{"GET", "/api/v1/config", auth.Admin, s.apiConfig},
		{"POST", "/api/v1/config/reload", auth.Admin, s.apiReload},
		{"GET", "/api/v1/users", auth.Admin, s.apiUsers},
		{"POST", "/api/v1/users", auth.Admin, s.apiUserAdd},
		{"POST", "/api/v1/users/{name}/role", auth.Admin, s.apiUserRole},
		{"POST", "/api/v1/users/{name}/unlock", auth.Admin, s.apiUserUnlock},
		{"POST", "/api/v1/users/{name}/remove", auth.Admin, s.apiUserRemove},
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer browsers send
	// "Origin: null" on form posts, which the origin check must refuse.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// apiError writes {"error": msg} with code.
func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// sameOrigin refuses a state change a browser sent from another site:
// Origin, when sent, must be this host over HTTPS; Sec-Fetch-Site, when
// sent, must be same-origin.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return false
	}
	if f := r.Header.Get("Sec-Fetch-Site"); f != "" && f != "same-origin" && f != "none" {
		return false
	}
	return true
}

// guard authenticates a request, checks its role and, for a state
// change, its origin and CSRF token, then runs the route.
func (s *Server) guard(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state := r.Method != http.MethodGet && r.Method != http.MethodHead
		if state {
			// Forms and JSON bodies here are small.
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		}
		if state && !sameOrigin(r) {
			apiError(w, http.StatusForbidden, "cross-site request refused")
			return
		}
		if rt.Role == "" {
			rt.Handler(w, r, &Principal{Remote: remoteAddr(r).String()})
			return
		}
		p, code, msg := s.principal(r)
		if p == nil {
			if !isAPI(r) && r.Method == http.MethodGet && code == http.StatusUnauthorized {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			apiError(w, code, msg)
			return
		}
		if !p.Role.Allows(rt.Role) {
			apiError(w, http.StatusForbidden, fmt.Sprintf("%s needs the %s role; %s is %s", rt.Pattern, rt.Role, p.User, p.Role))
			return
		}
		if state {
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if p.CSRF == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(p.CSRF)) != 1 {
				apiError(w, http.StatusForbidden, "missing or wrong CSRF token")
				return
			}
		}
		// No page or call may hold a reader for long, whatever it asks.
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		rt.Handler(w, r.WithContext(ctx), p)
	})
}

// requestTimeout bounds the work of one page or API call.
const requestTimeout = 10 * time.Second

// principal finds who makes r: a signed-in session, or, before any
// account exists, a loopback client as a viewer.
func (s *Server) principal(r *http.Request) (*Principal, int, string) {
	ctx := r.Context()
	remote := remoteAddr(r)
	n, err := s.o.Accounts.CountUsers(ctx)
	if err != nil {
		return nil, http.StatusServiceUnavailable, "store unavailable"
	}
	if n == 0 {
		if remote.IsLoopback() {
			return &Principal{User: "local", Role: auth.Viewer, Remote: remote.String()}, 0, ""
		}
		return nil, http.StatusForbidden, "no operator account exists yet, so the UI answers loopback clients only: create the first admin on the appliance with: nmos-certs users add NAME --role admin"
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, http.StatusUnauthorized, "sign in first"
	}
	hash := auth.TokenHash(c.Value)
	sess, err := s.o.Accounts.Session(ctx, hash)
	if err != nil {
		return nil, http.StatusUnauthorized, "the session ended: sign in again"
	}
	now := s.o.Clock()
	if now.Sub(sess.LastSeen) >= s.o.Idle || now.Sub(sess.CreatedAt) >= s.o.Absolute {
		_ = s.o.Accounts.DeleteSession(ctx, hash, nil)
		return nil, http.StatusUnauthorized, "the session timed out: sign in again"
	}
	u, err := s.o.Accounts.User(ctx, sess.User)
	if err != nil {
		return nil, http.StatusUnauthorized, "the account is gone"
	}
	role, err := auth.ParseRole(u.Role)
	if err != nil {
		return nil, http.StatusForbidden, "the account has no valid role"
	}
	// Written at most once a minute: reads do not each cost a commit. The
	// dashboard's own refresh (?auto=1) is not use: an open dashboard
	// does not keep a session alive.
	if now.Sub(sess.LastSeen) >= time.Minute && r.URL.Query().Get("auto") != "1" {
		_ = s.o.Accounts.TouchSession(ctx, hash, now)
	}
	return &Principal{User: u.Name, Role: role, CSRF: sess.CSRF, Remote: remote.String(), session: hash}, 0, ""
}

type loginView struct {
	Error   string
	NoUsers bool
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, _ *Principal) {
	n, _ := s.o.Accounts.CountUsers(r.Context())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = s.pages.ExecuteTemplate(w, "login.html", loginView{NoUsers: n == 0})
}

// failedLogin is the one answer to every refused sign-in: it does not
// tell a wrong name from a wrong password or a locked account.
const failedLogin = "Sign-in refused: wrong name or password, or the account is locked after too many failures."

func (s *Server) loginPost(w http.ResponseWriter, r *http.Request, _ *Principal) {
	ctx := r.Context()
	remote := remoteAddr(r)
	render := func(code int, msg string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		_ = s.pages.ExecuteTemplate(w, "login.html", loginView{Error: msg})
	}
	if ok, wait := s.limiter.Allow(remote); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		render(http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins from this address: try again in %d seconds.", int(wait.Seconds())+1))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	name, pw := r.PostFormValue("user"), r.PostFormValue("password")
	now := s.o.Clock()
	select {
	case s.verify <- struct{}{}:
	case <-ctx.Done():
		return
	}
	u, uerr := s.o.Accounts.User(ctx, name)
	var verr error
	switch {
	case uerr != nil || auth.CheckUserName(name) != nil:
		verr = auth.VerifyMissing(pw)
	default:
		verr = auth.Verify(u.PasswordHash, pw)
	}
	<-s.verify
	if uerr != nil || verr != nil || (!u.LockedUntil.IsZero() && now.Before(u.LockedUntil)) {
		s.limiter.Fail(remote)
		if uerr == nil {
			// A locked account's failures are counted too; only an
			// operator (users unlock) or the end of the lock frees it.
			if _, err := s.o.Accounts.LoginFailed(ctx, name, now, auth.AccountFailures, auth.AccountLock, remote.String()); err != nil {
				s.o.Logger.Warn("recording a failed sign-in", "user", name, "err", err)
			}
		}
		s.o.Logger.Info("sign-in refused", "user", name, "remote", remote.String())
		render(http.StatusUnauthorized, failedLogin)
		return
	}
	token, hash, err := auth.NewToken()
	if err != nil {
		render(http.StatusInternalServerError, "Cannot open a session.")
		return
	}
	csrf, _, err := auth.NewToken()
	if err != nil {
		render(http.StatusInternalServerError, "Cannot open a session.")
		return
	}
	rehash := ""
	if auth.NeedsRehash(u.PasswordHash, s.o.Hash) {
		rehash, _ = auth.Hash(pw, s.o.Hash)
	}
	sess := &store.Session{TokenHash: hash, User: u.Name, CSRF: csrf, CreatedAt: now, LastSeen: now, Remote: remote.String()}
	if err := s.o.Accounts.LoginSucceeded(ctx, u.Name, now, rehash, sess); err != nil {
		render(http.StatusServiceUnavailable, "Cannot open a session: the store is unavailable.")
		return
	}
	s.limiter.Succeed(remote)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: token, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.o.Absolute.Seconds())})
	s.o.Logger.Info("signed in", "user", u.Name, "remote", remote.String())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p *Principal) {
	if p.session != nil {
		_ = s.o.Accounts.DeleteSession(r.Context(), p.session, &store.AuditRecord{At: s.o.Clock(), Actor: p.User,
			Action: "user_signed_out", Target: p.User, Remote: p.Remote})
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	if isAPI(r) || r.Header.Get("X-CSRF-Token") != "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) apiSession(w http.ResponseWriter, _ *http.Request, p *Principal) {
	writeJSON(w, map[string]any{"user": p.User, "role": p.Role, "csrf": p.CSRF, "signed_in": p.session != nil})
}

// status is the dashboard's data for p: the details of logged
// warnings (error texts, addresses) are for admins.
func (s *Server) status(r *http.Request, p *Principal) (*StatusView, error) {
	st, err := s.o.Backend.Status(r.Context())
	if err != nil {
		return nil, err
	}
	if !p.Role.Allows(auth.Admin) {
		for i := range st.RecentErrors {
			st.RecentErrors[i].Detail = ""
		}
	}
	return st, nil
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request, p *Principal) {
	st, err := s.status(r, p)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	writeJSON(w, st)
}

type auditJSON struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail"`
	Remote string    `json:"remote"`
}

// apiAudit lists audit records, newest first: ?q= text to find,
// ?before= an id for the next page, ?limit= (at most 500).
func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, _ *Principal) {
	q := r.URL.Query()
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 500 {
		limit = 200
	}
	if len(q.Get("q")) > maxSearchText {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("search for at most %d characters", maxSearchText))
		return
	}
	recs, err := s.o.Accounts.SearchAudit(r.Context(), store.AuditQuery{Text: q.Get("q"), Before: before, Limit: limit})
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	out := make([]auditJSON, 0, len(recs))
	for i, a := range recs {
		if i == limit {
			break
		}
		out = append(out, auditJSON{a.ID, a.At, a.Actor, a.Action, a.Target, a.Detail, a.Remote})
	}
	writeJSON(w, out)
}

func (s *Server) apiPending(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.Pending(r.Context())
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	writeJSON(w, v)
}

func (s *Server) apiCertificates(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.Certificates(r.Context(), searchFrom(r))
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, v)
}

func (s *Server) apiCA(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.CA(r.Context())
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, v)
}

func (s *Server) apiRolloverPlan(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.RolloverPlan(r.Context(), r.URL.Query().Get("hierarchy"), r.URL.Query().Get("kind"))
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, v)
}

func (s *Server) apiRollover(w http.ResponseWriter, r *http.Request, p *Principal) {
	var body struct{ Hierarchy, Kind, From string }
	if !readJSON(w, r, &body) {
		return
	}
	msg, err := s.o.Backend.Rollover(r.Context(), body.Hierarchy, body.Kind, body.From, webActor(p), p.Remote)
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, map[string]string{"result": msg})
}

// backendError maps a Backend error to a status.
func backendError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrInvalid):
		apiError(w, http.StatusBadRequest, err.Error())
	default:
		apiError(w, http.StatusConflict, err.Error())
	}
}

func (s *Server) apiDecide(approve bool) func(http.ResponseWriter, *http.Request, *Principal) {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) {
		if err := s.o.Backend.Decide(r.Context(), r.PathValue("id"), approve, webActor(p), p.Remote); err != nil {
			backendError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) apiRevoke(w http.ResponseWriter, r *http.Request, p *Principal) {
	var body struct {
		Reason string `json:"reason"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		apiError(w, http.StatusBadRequest, "want a JSON body {\"reason\": \"keyCompromise\"}")
		return
	}
	if body.Reason == "" {
		body.Reason = "unspecified"
	}
	if err := s.o.Backend.Revoke(r.Context(), r.PathValue("serial"), body.Reason, webActor(p), p.Remote); err != nil {
		backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiRelease(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.o.Backend.ReleaseName(r.Context(), r.PathValue("name"), webActor(p), p.Remote); err != nil {
		backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type userJSON struct {
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	CreatedAt   time.Time  `json:"created_at"`
	LastLogin   *time.Time `json:"last_login,omitempty"`
	LockedUntil *time.Time `json:"locked_until,omitempty"`
}

func (s *Server) users(r *http.Request) ([]userJSON, error) {
	users, err := s.o.Accounts.Users(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]userJSON, 0, len(users))
	now := s.o.Clock()
	for _, u := range users {
		j := userJSON{Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt}
		if !u.LastLogin.IsZero() {
			t := u.LastLogin
			j.LastLogin = &t
		}
		if u.LockedUntil.After(now) {
			t := u.LockedUntil
			j.LockedUntil = &t
		}
		out = append(out, j)
	}
	return out, nil
}

func (s *Server) apiUsers(w http.ResponseWriter, r *http.Request, _ *Principal) {
	out, err := s.users(r)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	writeJSON(w, out)
}

func (s *Server) apiCertificate(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.Certificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, v)
}

// apiCertificatePEM downloads the certificate (?chain=1: with its chain)
// as a PEM file.
func (s *Server) apiCertificatePEM(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.Certificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		backendError(w, err)
		return
	}
	body, name := v.PEM, v.Serial+".pem"
	if r.URL.Query().Get("chain") == "1" {
		body, name = v.ChainPEM, v.Serial+"-chain.pem"
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, _ = io.WriteString(w, body)
}

type bindingJSON struct {
	Name    string    `json:"name"`
	Holder  string    `json:"holder"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
	Serial  string    `json:"serial"`
}

func (s *Server) apiNames(w http.ResponseWriter, r *http.Request, _ *Principal) {
	bs, err := s.o.Accounts.NameBindings(r.Context(), store.BindingFilter{Name: r.URL.Query().Get("name"), Holder: r.URL.Query().Get("identity"), Limit: 1000})
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	out := make([]bindingJSON, 0, len(bs))
	for _, b := range bs {
		j := bindingJSON{Name: b.Name, Holder: b.Holder, Since: b.Since, Expires: b.Expires}
		if b.Serial != nil {
			j.Serial = store.SerialKey(b.Serial)
		}
		out = append(out, j)
	}
	writeJSON(w, out)
}

func (s *Server) apiConfig(w http.ResponseWriter, r *http.Request, _ *Principal) {
	v, err := s.o.Backend.Config(r.Context())
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, v)
}

func (s *Server) apiReload(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.o.Backend.Reload(r.Context(), webActor(p), p.Remote); err != nil {
		backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readJSON decodes a small JSON body into v, or answers 400.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		apiError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) userAudit(p *Principal, action, target, detail string) *store.AuditRecord {
	return &store.AuditRecord{At: s.o.Clock(), Actor: "operator " + p.User + " (web)", Remote: p.Remote, Action: action, Target: target, Detail: detail}
}

// accountError maps a store error on an account to a status.
func accountError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		apiError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrLastAdmin):
		apiError(w, http.StatusConflict, err.Error())
	default:
		apiError(w, http.StatusServiceUnavailable, err.Error())
	}
}

// addUser, setRole, unlockUser and removeUser are the users page's and
// the API's account changes, each audited in its transaction. Their
// errors wrap ErrInvalid or the store's.
func (s *Server) addUser(r *http.Request, p *Principal, name, roleName, password string) error {
	role, err := auth.ParseRole(roleName)
	if err == nil {
		err = auth.CheckUserName(name)
	}
	if err == nil {
		err = auth.CheckPassword(password)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	h, err := auth.Hash(password, s.o.Hash)
	if err != nil {
		return fmt.Errorf("cannot hash the password: %w", err)
	}
	u := &store.User{Name: name, Role: string(role), PasswordHash: h, CreatedAt: s.o.Clock()}
	return s.o.Accounts.PutUser(r.Context(), u, s.userAudit(p, "user_added", name, "role "+string(role)))
}

func (s *Server) setRole(r *http.Request, p *Principal, name, roleName string) error {
	role, err := auth.ParseRole(roleName)
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	_, err = s.o.Accounts.UpdateUser(r.Context(), name, store.UserUpdate{Role: string(role)}, s.o.Clock(), s.userAudit(p, "user_role", name, "role "+string(role)))
	return err
}

func (s *Server) unlockUser(r *http.Request, p *Principal, name string) error {
	_, err := s.o.Accounts.UpdateUser(r.Context(), name, store.UserUpdate{Unlock: true}, s.o.Clock(), s.userAudit(p, "user_unlocked", name, ""))
	return err
}

func (s *Server) removeUser(r *http.Request, p *Principal, name string) error {
	return s.o.Accounts.DeleteUser(r.Context(), name, s.userAudit(p, "user_removed", name, ""))
}

// accountStatus answers an account change's error.
func accountStatus(w http.ResponseWriter, err error, ok int) {
	switch {
	case err == nil:
		w.WriteHeader(ok)
	case errors.Is(err, ErrInvalid):
		apiError(w, http.StatusBadRequest, err.Error())
	default:
		accountError(w, err)
	}
}

func (s *Server) apiUserAdd(w http.ResponseWriter, r *http.Request, p *Principal) {
	var body struct{ Name, Role, Password string }
	if !readJSON(w, r, &body) {
		return
	}
	accountStatus(w, s.addUser(r, p, body.Name, body.Role, body.Password), http.StatusCreated)
}

func (s *Server) apiUserRole(w http.ResponseWriter, r *http.Request, p *Principal) {
	var body struct{ Role string }
	if !readJSON(w, r, &body) {
		return
	}
	accountStatus(w, s.setRole(r, p, r.PathValue("name"), body.Role), http.StatusNoContent)
}

func (s *Server) apiUserUnlock(w http.ResponseWriter, r *http.Request, p *Principal) {
	accountStatus(w, s.unlockUser(r, p, r.PathValue("name")), http.StatusNoContent)
}

func (s *Server) apiUserRemove(w http.ResponseWriter, r *http.Request, p *Principal) {
	accountStatus(w, s.removeUser(r, p, r.PathValue("name")), http.StatusNoContent)
}

// ExpireSessions ends timed-out sessions every interval until ctx ends.
func (s *Server) ExpireSessions(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := s.o.Clock()
			if _, err := s.o.Accounts.ExpireSessions(ctx, now.Add(-s.o.Idle), now.Add(-s.o.Absolute)); err != nil && ctx.Err() == nil {
				s.o.Logger.Warn("expiring sessions", "err", err)
			}
		}
	}
}
