package app

import (
	"encoding/json"
	"net"
	"net/http"
	"time"

	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot"
)

// The operator UI of this version is read-only and has no login, so it
// answers loopback clients only (and the configuration only lets it
// listen on a loopback address). Decisions are made with the CLI.

type webGeneration struct {
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	State       string    `json:"state"`
	Key         string    `json:"key"`
	NotAfter    time.Time `json:"not_after"`
	Issued      int       `json:"issued"`
	Fingerprint string    `json:"fingerprint"`
	LifeUsed    float64   `json:"life_used"`
	RolloverDue bool      `json:"rollover_due"`
}

type webPending struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Subject   string    `json:"subject"`
	Names     []string  `json:"names"`
	Client    string    `json:"client"`
}

type webCertificate struct {
	Serial   string    `json:"serial"`
	Status   string    `json:"status"`
	Issuer   string    `json:"issuer"`
	Key      string    `json:"key"`
	NotAfter time.Time `json:"not_after"`
	Names    []string  `json:"names"`
	Identity string    `json:"identity"`
}

type webStatus struct {
	Version      string           `json:"version"`
	Now          time.Time        `json:"now"`
	Generations  []webGeneration  `json:"generations"`
	Pending      []webPending     `json:"pending"`
	Certificates []webCertificate `json:"certificates"`
}

func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "the operator UI answers loopback clients only", http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the operator UI is read-only", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *App) webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(webroot.FS()))
	mux.HandleFunc("/api/v1/status", a.webStatus)
	return loopbackOnly(mux)
}

func (a *App) webStatus(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := a.o.Clock()
	counts, err := a.store.CountCertificates(ctx)
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	s := webStatus{Version: Version, Now: now.UTC(), Generations: []webGeneration{}, Pending: []webPending{}, Certificates: []webCertificate{}}
	for _, g := range a.ca.Generations() {
		key, _, _ := policy.KeyType(g.Cert.PublicKey)
		used := ca.LifeUsed(g.Cert.NotBefore, g.Cert.NotAfter, now)
		due := g.State == "active" && ((g.Role == ca.RoleIntermediate && used >= a.rollAt) || (g.Role == ca.RoleRoot && used >= a.rootAt))
		s.Generations = append(s.Generations, webGeneration{ID: g.ID, Role: g.Role, State: string(g.State), Key: key,
			NotAfter: g.Cert.NotAfter.UTC(), Issued: counts[g.ID], Fingerprint: g.Fingerprint, LifeUsed: used, RolloverDue: due})
	}
	pending, err := a.store.ListPending(ctx, store.PendingWaiting)
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	for _, p := range pending {
		s.Pending = append(s.Pending, webPending{ID: p.ID, Operation: p.Operation, CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt,
			Subject: p.Subject, Names: nonNil(p.SANs), Client: p.Client})
	}
	certs, err := a.store.ListCertificates(ctx, store.ListOptions{Limit: 50})
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	for _, c := range certs {
		status := "valid"
		switch {
		case c.Revoked:
			status = "revoked"
		case now.After(c.NotAfter):
			status = "expired"
		}
		s.Certificates = append(s.Certificates, webCertificate{Serial: store.SerialKey(c.Serial), Status: status, Issuer: c.IssuerID,
			Key: c.KeyType, NotAfter: c.NotAfter, Names: nonNil(c.SANs), Identity: c.Identity})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
