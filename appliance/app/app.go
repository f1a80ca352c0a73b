// Package app builds every component of the appliance from a
// configuration, runs them and stops them. It alone connects the domain
// packages to each other.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/tls"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/est"
	"github.com/nmos-certs/nmos-certs/ocsp"
)

// Version is set at build time.
var Version = "dev"

// DBFile is the SQLite database's name inside the data directory.
const DBFile = "nmos-certs.db"

// Open opens the store and the authority of a configuration, creating the
// data directory and, when create is true, the CA. The caller closes the
// returned store.
func Open(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer, clock func() time.Time, create bool) (*ca.Authority, store.Store, error) {
	st, err := openStore(ctx, cfg, create)
	if err != nil {
		return nil, nil, err
	}
	imp := map[string]*ca.Import{}
	for h, i := range map[string]*config.Import{ca.ECDSA: cfg.CA.ECDSA.Import, ca.RSA: cfg.CA.RSA.Import} {
		if i != nil {
			imp[h] = &ca.Import{RootCert: i.RootCert, RootKey: i.RootKey, IntermediateCert: i.IntermediateCert, IntermediateKey: i.IntermediateKey}
		}
	}
	auth, err := ca.Open(ctx, ca.Options{
		Store:                st,
		DataDir:              cfg.DataDir,
		Domain:               cfg.Domain,
		BaseURL:              cfg.CA.BaseURL,
		LeafLifetime:         cfg.CA.LeafLifetime.D(),
		Backdate:             cfg.CA.Backdate.D(),
		RootLifetime:         cfg.CA.RootLifetime.D(),
		IntermediateLifetime: cfg.CA.IntermediateLifetime.D(),
		Organization:         cfg.CA.Organization,
		RSARootBits:          cfg.CA.RSARootBits,
		RSAIntermediateBits:  cfg.CA.RSAIntermediateBits,
		Import:               imp,
		Names:                CANames(cfg),
		Clock:                clock,
		Logger:               logger.With("component", "ca"),
		Registerer:           reg,
	}, create)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return auth, st, nil
}

// openStore opens the configured store: SQLite in data_dir, or
// PostgreSQL. Without create, a SQLite store must exist.
func openStore(ctx context.Context, cfg *config.Config, create bool) (store.Store, error) {
	if cfg.Store.Driver == "postgres" {
		dsn, err := readDSN(cfg)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		return store.OpenPostgres(ctx, dsn)
	}
	dbPath := filepath.Join(cfg.DataDir, DBFile)
	if !create {
		// Nothing is made where there is nothing: a command pointed at
		// the wrong place says where it looked.
		if _, err := os.Stat(dbPath); errors.Is(err, os.ErrNotExist) {
			abs, _ := filepath.Abs(dbPath)
			return nil, fmt.Errorf("no CA here: %s does not exist (data_dir %q of %s): %w", abs, cfg.DataDir, cfg.Source, ca.ErrNoCA)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return store.OpenSQLite(ctx, dbPath)
}

// readDSN is store.dsn, or the content of store.dsn_file, which must be
// private.
func readDSN(cfg *config.Config) (string, error) {
	if cfg.Store.DSNFile == "" {
		return cfg.Store.DSN, nil
	}
	fi, err := os.Stat(cfg.Store.DSNFile)
	if err != nil {
		return "", fmt.Errorf("store.dsn_file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("store.dsn_file %s is mode %04o, open to group or others: make it private (chmod 600 %s)", cfg.Store.DSNFile, perm, cfg.Store.DSNFile)
	}
	b, err := os.ReadFile(cfg.Store.DSNFile)
	if err != nil {
		return "", fmt.Errorf("store.dsn_file: %w", err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("store.dsn_file %s is empty", cfg.Store.DSNFile)
	}
	return dsn, nil
}

// CANames are the name settings of a configuration: the names only the
// appliance may hold, each with the rule that reserves it, and the name
// binding.
func CANames(cfg *config.Config) ca.Names {
	n := ca.Names{
		Bind:  cfg.CA.NameBinding != config.NameBindingOff,
		Grace: cfg.CA.NameBindingGrace.D(),
		Reserved: []policy.Reserved{
			{Pattern: cfg.Hostname, Rule: "the appliance's own hostname (hostname)"},
			{Pattern: cfg.Domain, Rule: "the zone apex (domain)"},
		},
	}
	for i, s := range cfg.DNS.Services {
		if s.Target != "" {
			n.Reserved = append(n.Reserved, policy.Reserved{Pattern: s.Target,
				Rule: fmt.Sprintf("the target of the DNS-SD service %s %q (dns.services[%d])", s.Type, s.Instance, i)})
		}
	}
	for i, p := range cfg.DNS.Peers {
		n.Reserved = append(n.Reserved, policy.Reserved{Pattern: p.Hostname,
			Rule: fmt.Sprintf("the hostname of another appliance (dns.peers[%d])", i)})
	}
	for i, r := range cfg.CA.ReservedNames {
		n.Reserved = append(n.Reserved, policy.Reserved{Pattern: r, Rule: fmt.Sprintf("ca.reserved_names[%d]", i)})
	}
	return n
}

// Options tune an App beyond its configuration.
type Options struct {
	Logger *slog.Logger
	// Clock is injected into every time-dependent part; time.Now by default.
	Clock func() time.Time
	// EventPoll is how often the store's change feed is read (1s default):
	// this is how a revocation made by the CLI reaches the running appliance.
	EventPoll time.Duration
	// Ready, if set, is called once every listener is bound.
	Ready func(*App)
	// LogLevel, if set, is the level a reload changes (log.level).
	LogLevel *slog.LevelVar
	// Heartbeat is how often the appliance registers itself in a store
	// shared with other appliances (5s default); one that misses three is
	// no longer advertised by the others.
	Heartbeat time.Duration
}

// App is a running appliance.
type App struct {
	// recent keeps the last warnings and errors; refused samples the
	// refused-requests counter (the dashboard's figures).
	recent  *recentLog
	refused refusedSamples
	// rolloverMu makes the operator UI's rollovers one at a time.
	rolloverMu sync.Mutex
	// push is dns.push (its pusher nil when off); pushNow wakes pushLoop.
	push    atomic.Pointer[pushState]
	pushNow chan struct{}
	pushMet *pushMetrics
	cfg     *config.Config
	o       Options
	log     *slog.Logger
	reg     *prometheus.Registry
	ca      *ca.Authority
	store   store.Store

	server     *serverCerts
	estHandler estHandler
	estConns   connGauge
	ocsp       *ocsp.Responder
	crl        *ocsp.Publisher
	dns        *dns.Server

	listeners map[string]net.Listener
	servers   []*http.Server
	serving   atomic.Bool           // every listener serves; false again once stopping
	lock      *dataLock             // this process's hold on the data directory
	caErr     atomic.Pointer[error] // why the CA could not follow the store's last change
	// validLeaves are the valid certificates of each generation, counted
	// by maintainCA.
	validLeaves atomic.Pointer[map[string]int]
	// rollAt is the share of an intermediate's life after which it is
	// rolled over (ca.intermediate_rollover_at, restart-only: read once,
	// so that the loops do not read a.cfg, which a reload replaces).
	rollAt float64
	// Root rollover settings (restart-only), and when each hierarchy's
	// due root rollover was last announced (maintainCA's goroutine only).
	rootAt        float64
	rootOverlap   time.Duration
	autoRoot      bool
	rootAnnounced map[string]time.Time
	crlWarned     map[string]time.Time // offline roots' CRLs warned about (maintainCA only)

	mu        sync.Mutex
	lastEvent int64

	reloadMu sync.Mutex
	reloads  *reloadMetrics
	// nodes are the appliances registered in a shared store, as last
	// read (registerNode); livePeers those advertised with dns.peers, and
	// skippedPeers why others are not; under reloadMu.
	nodes        []store.Node
	livePeers    []config.Peer
	skippedPeers []string
	// lastReload and lastReloadErr are the last reload's time and
	// failure ("" when it applied), under reloadMu.
	lastReload    time.Time
	lastReloadErr string
	trustMu       sync.Mutex
	trust         *est.Trust
	trustStop     context.CancelFunc
	runCtx        context.Context
	wg            sync.WaitGroup
}

// New builds every component from cfg. Nothing listens yet.
func New(ctx context.Context, cfg *config.Config, o Options) (*App, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.EventPoll == 0 {
		o.EventPoll = time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = defaultHeartbeat
	}
	// Whatever config check refuses is refused before the data directory
	// is touched (a CA is not created for a configuration that fails).
	if err := CheckConfig(ctx, cfg); err != nil {
		return nil, err
	}
	// The dashboard shows the last warnings and errors logged.
	recent := &recentLog{max: 20}
	o.Logger = slog.New(recentHandler{next: o.Logger.Handler(), log: recent})
	a := &App{cfg: cfg, o: o, log: o.Logger, recent: recent, reg: prometheus.NewRegistry(), listeners: map[string]net.Listener{},
		rollAt: float64(cfg.CA.IntermediateRolloverAt) / 100, rootAt: float64(cfg.CA.RootRolloverAt) / 100,
		rootOverlap: cfg.CA.RootRolloverOverlap.D(), autoRoot: cfg.CA.AutoRootRollover, rootAnnounced: map[string]time.Time{}, crlWarned: map[string]time.Time{}}
	a.reg.MustRegister(buildInfo())
	a.reloads = newReloadMetrics(a.reg)
	a.pushMet, a.pushNow = newPushMetrics(a.reg), make(chan struct{}, 1)
	push, err := newPushState(cfg)
	if err != nil {
		return nil, fmt.Errorf("dns.push: %w", err)
	}
	a.push.Store(push)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.lock = lock
	auth, st, err := Open(ctx, cfg, o.Logger, a.reg, o.Clock, true)
	if err != nil {
		lock.release()
		return nil, err
	}
	a.ca, a.store = auth, st
	registerStoreMetrics(a.reg, st)
	_, shared := st.(nodeRegistry)
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nmos_certs_appliances",
		Help: "Appliances registered alive in the store shared with other appliances (PostgreSQL), this one included, as last read; 1 on a store of one appliance (SQLite).",
	}, func() float64 {
		if !shared {
			return 1
		}
		a.reloadMu.Lock()
		defer a.reloadMu.Unlock()
		return float64(len(a.nodes))
	}))
	a.reg.MustRegister(newOwnCertsCollector(a), newRolloverCollector(a))
	if b, ok := st.(interface{ SetBusy(func() bool) }); ok {
		b.SetBusy(a.estConns.busy)
	}
	if err := a.build(ctx); err != nil {
		st.Close()
		lock.release()
		return nil, err
	}
	return a, nil
}

// build makes every service of the configuration; nothing listens yet.
func (a *App) build(ctx context.Context) error {
	var err error
	if a.lastEvent, err = a.store.LastEvent(ctx); err != nil {
		return err
	}
	a.server = &serverCerts{ca: a.ca, hostname: a.cfg.Hostname, renewBefore: a.cfg.EST.ServerCertRenewBefore.D(),
		clock: a.o.Clock, log: a.log.With("component", "tls")}
	srv, trust, err := a.newEST(ctx)
	if err != nil {
		return err
	}
	a.estHandler.p.Store(srv)
	a.trust = trust
	if err := a.newRevocation(ctx); err != nil {
		return err
	}
	// The server certificates are loaded (or issued) once the responder
	// exists, so that they are stapled from the start; nothing before
	// this point presents them.
	a.server.responder.Store(a.ocsp)
	return a.server.refresh(ctx)
}

// Close releases what New took, for an App that is not Run (Run
// releases it when it ends): the store and the data directory's lock.
func (a *App) Close() error {
	err := a.store.Close()
	a.lock.release()
	return err
}

// Authority returns the app's CA.
func (a *App) Authority() *ca.Authority { return a.ca }

// Addr returns the bound address of a listener ("est", "http", "dns",
// "metrics", "web"), or nil. For "dns" it is the TCP address; UDP uses the same.
func (a *App) Addr(name string) net.Addr {
	if name == "dns" && a.dns != nil {
		return net.TCPAddrFromAddrPort(a.dns.Addr())
	}
	if l := a.listeners[name]; l != nil {
		return l.Addr()
	}
	return nil
}

// Gatherer returns what /metrics serves: the appliance's registry and the
// process-wide default one (Go runtime, process, CoreDNS).
func (a *App) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{a.reg, prometheus.DefaultGatherer}
}

func (a *App) listen(name, addr string) error {
	if addr == "" || addr == config.Off {
		return nil
	}
	// No TCP keep-alive probes: the servers' read and idle timeouts end
	// connections from peers that went away, and an EST client opens a
	// connection per request, so the four setsockopt calls Go makes on
	// every accepted connection to arm them would be spent for nothing.
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.%s: %w", name, err)
	}
	a.listeners[name] = l
	return nil
}

// Run binds every listener, serves until ctx ends, then shuts down.
func (a *App) Run(ctx context.Context) error {
	defer a.lock.release()
	defer a.store.Close()
	for _, l := range []struct{ name, addr string }{
		{"est", a.cfg.Listen.EST},
		{"http", a.cfg.Listen.HTTP},
		{"metrics", a.cfg.Listen.Metrics},
		{"web", a.cfg.Listen.Web},
	} {
		if err := a.listen(l.name, l.addr); err != nil {
			a.closeListeners()
			return err
		}
	}
	dnsOpts, err := dnsOptions(a.cfg)
	if err == nil {
		a.dns, err = dns.Start(dnsOpts, a.log)
	}
	if err != nil {
		a.closeListeners()
		return fmt.Errorf("listen.dns: %w", err)
	}
	defer a.dns.Stop()

	a.listeners["est"] = tls.NewListener(a.listeners["est"], est.TLSConfig(a.server.get))
	a.serve("est", &a.estHandler)

	if total, ok := a.refusedTotal(); ok {
		a.refused.add(a.o.Clock(), total)
	}
	loops := []func(context.Context){a.watchEvents, a.ocsp.Run, a.crl.Run, a.renewServerCerts, a.maintainCA, a.sampleRefused, a.pushLoop, a.registerNode}
	if l := a.listeners["web"]; l != nil {
		web, err := a.webHandler()
		if err != nil {
			a.closeListeners()
			return fmt.Errorf("web: %w", err)
		}
		webTLS := est.TLSConfig(a.server.get)
		webTLS.ClientAuth = tls.NoClientCert
		a.listeners["web"] = tls.NewListener(l, webTLS)
		a.serve("web", web)
		loops = append(loops, func(ctx context.Context) { web.ExpireSessions(ctx, time.Minute) })
	}

	httpMux := http.NewServeMux()
	httpMux.Handle("/ca/", a.caCertHandler())
	httpMux.Handle("/crl/", a.crlHandler())
	a.serve("http", a.ocsp.Wrap(httpMux))

	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", promhttp.HandlerFor(a.Gatherer(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelError)}))
	metricsMux.Handle("/healthz", a.healthHandler())
	metricsMux.Handle("/readyz", a.readyHandler())
	a.serve("metrics", metricsMux)
	a.serving.Store(true)

	for name, l := range a.listeners {
		a.log.Info("listening", "service", name, "addr", l.Addr().String())
	}
	if a.o.Ready != nil {
		a.o.Ready(a)
	}

	for _, loop := range loops {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); loop(ctx) }()
	}
	a.trustMu.Lock()
	a.runCtx = ctx
	a.trustMu.Unlock()
	a.swapTrust(a.trust)

	<-ctx.Done()
	a.serving.Store(false)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range a.servers {
		if err := s.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	a.wg.Wait()
	a.log.Info("stopped")
	return errors.Join(errs...)
}

func (a *App) closeListeners() {
	for _, l := range a.listeners {
		l.Close()
	}
}

func (a *App) serve(name string, h http.Handler) {
	l := a.listeners[name]
	if l == nil {
		return
	}
	s := &http.Server{
		Handler:           corkOnClose(h),
		ConnContext:       withConn,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.With("component", name).Handler(), slog.LevelDebug),
	}
	if name == "est" {
		s.ConnState = a.estConns.track
	}
	a.servers = append(a.servers, s)
	go func() {
		if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("server stopped", "service", name, "err", err)
		}
	}()
}

// watchEvents follows the store's change feed so that changes made by
// another process (the CLI) take effect here within seconds.
func (a *App) watchEvents(ctx context.Context) {
	t := time.NewTicker(a.o.EventPoll)
	defer t.Stop()
	expire := time.NewTicker(time.Minute)
	defer expire.Stop()
	// A store shared with other appliances says when they add events
	// (PostgreSQL's NOTIFY); the poll stays, for what a notice misses.
	var notified <-chan struct{}
	if n, ok := a.store.(interface {
		Notifications(context.Context) <-chan struct{}
	}); ok {
		notified = n.Notifications(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-notified:
			a.pollEvents(ctx)
		case <-expire.C:
			a.once(ctx, "expire-pending", func(ctx context.Context) {
				if n, err := a.store.ExpirePending(ctx, a.o.Clock()); err != nil {
					a.log.Warn("expire pending requests", "err", err)
				} else if n > 0 {
					a.log.Info("pending requests expired", "count", n)
				}
			})
		case <-t.C:
			a.pollEvents(ctx)
		}
	}
}

func (a *App) pollEvents(ctx context.Context) {
	a.mu.Lock()
	since := a.lastEvent
	a.mu.Unlock()
	evs, err := a.store.EventsSince(ctx, since)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("read store events", "err", err)
		}
		return
	}
	for _, e := range evs {
		a.handleEvent(ctx, e)
		a.mu.Lock()
		a.lastEvent = e.ID
		a.mu.Unlock()
	}
}

func (a *App) handleEvent(ctx context.Context, e store.Event) {
	switch e.Kind {
	case store.EventGenerations:
		if err := a.ca.Reload(ctx); err != nil {
			// Say so on /readyz too: the CA on record is not the one
			// this process issues from (a key it cannot read, say).
			a.caErr.Store(&err)
			a.log.Error("reload CA generations", "err", err)
			return
		}
		a.caErr.Store(nil)
		a.estHandler.p.Load().Invalidate()
		if err := a.ocsp.Reload(ctx); err != nil {
			a.log.Error("reload OCSP issuers", "err", err)
		}
		if err := a.crl.RebuildAll(ctx); err != nil {
			a.log.Error("rebuild CRLs", "err", err)
		}
		// After a rollover the appliance's own TLS certificates move to
		// the new intermediate.
		if err := a.server.refresh(ctx); err != nil {
			a.log.Error("renew server certificates after a CA change", "err", err)
		}
	case store.EventIssued, store.EventRefused:
		a.ca.CountEvent(e)
	case store.EventRevoked:
		issuer, serialHex, ok := strings.Cut(e.Ref, "/")
		serial, okSerial := new(big.Int).SetString(serialHex, 16)
		if !ok || !okSerial {
			a.log.Warn("malformed revocation event", "ref", e.Ref)
			return
		}
		a.ocsp.Invalidate(issuer, serial)
		if err := a.crl.Rebuild(ctx, issuer); err != nil {
			a.log.Error("rebuild CRL after revocation", "issuer", issuer, "err", err)
		}
		// One of the appliance's own TLS certificates: replace it now
		// rather than at the next hourly check.
		for _, c := range a.server.get() {
			if c.Leaf != nil && c.Leaf.SerialNumber.Cmp(serial) == 0 {
				if err := a.server.refresh(ctx); err != nil {
					a.log.Error("replace revoked server certificate", "err", err)
				}
				break
			}
		}
	}
}

// renewServerCerts keeps the appliance's own TLS certificates fresh.
func (a *App) renewServerCerts(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.server.refresh(ctx); err != nil {
				a.log.Error("renew server certificates", "err", err)
			}
		}
	}
}

// caCertHandler serves each CA certificate by generation ID, as DER at
// /ca/<id>.crt (the caIssuers URL) and PEM at /ca/<id>.pem.
func (a *App) caCertHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := r.URL.Path[len("/ca/"):]
		ext := filepath.Ext(name)
		cert, ok := a.ca.CACertificate(name[:len(name)-len(ext)])
		if !ok || (ext != ".crt" && ext != ".pem") {
			http.NotFound(w, r)
			return
		}
		body, ctype := cert.Raw, "application/pkix-cert"
		if ext == ".pem" {
			body, ctype = ca.PEM(cert), "application/x-pem-file"
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	})
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nmos_certs_build_info",
		Help: "Build information of the running nmos-certs binary.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(Version, goVersion()).Set(1)
	return g
}

// registerStoreMetrics exports the group-commit writer's counters, whose
// ratio is the certificates stored per sync, and the syncs': their mean
// duration is the disk's answer to how durable commits fare.
func registerStoreMetrics(reg prometheus.Registerer, st store.Store) {
	if ws, ok := st.(interface{ WALSyncStats() store.WALSyncStats }); ok {
		syncs := prometheus.NewDesc("nmos_certs_store_wal_syncs_total",
			"Syncs of the database's WAL after certificate commits, by system call path: held (the Go runtime's P kept, while the disk answers quickly) or blocking (a slow or stalling disk).",
			[]string{"path"}, nil)
		spent := prometheus.NewDesc("nmos_certs_store_wal_sync_seconds_total",
			"Wall time of those syncs.", nil, nil)
		reg.MustRegister(collectorFunc{descs: []*prometheus.Desc{syncs, spent}, collect: func(ch chan<- prometheus.Metric) {
			s := ws.WALSyncStats()
			ch <- prometheus.MustNewConstMetric(syncs, prometheus.CounterValue, float64(s.Syncs-s.Blocking), "held")
			ch <- prometheus.MustNewConstMetric(syncs, prometheus.CounterValue, float64(s.Blocking), "blocking")
			ch <- prometheus.MustNewConstMetric(spent, prometheus.CounterValue, s.Time.Seconds())
		}})
	}
	if cl, ok := st.(interface {
		CommitLatency() (map[float64]uint64, uint64, float64)
	}); ok {
		d := prometheus.NewDesc("nmos_certs_store_commit_duration_seconds",
			"Time of the store's certificate transactions, from BEGIN to the commit made durable (the WAL synced on SQLite, COMMIT returned on PostgreSQL): how long a signed certificate waits to be durable.",
			nil, nil)
		reg.MustRegister(collectorFunc{descs: []*prometheus.Desc{d}, collect: func(ch chan<- prometheus.Metric) {
			b, n, sum := cl.CommitLatency()
			ch <- prometheus.MustNewConstHistogram(d, n, sum, b)
		}})
	}
	cs, ok := st.(interface{ CommitStats() (commits, rows int64) })
	if !ok {
		return
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nmos_certs_store_certificate_commits_total",
			Help: "Transactions the store's writer committed to record issued certificates (one durable commit each: a sync of the WAL on SQLite).",
		}, func() float64 { c, _ := cs.CommitStats(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nmos_certs_store_certificates_committed_total",
			Help: "Issued certificates recorded by those transactions.",
		}, func() float64 { _, r := cs.CommitStats(); return float64(r) }),
	)
}

// collectorFunc is a prometheus.Collector made of its descriptions and a
// function that sends their current values.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
