package est_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/est"
)

// Example shows how the application wires the EST server: the authority
// and the store implement est.CA and est.Approvals; the listener uses
// est.TLSConfig; the manufacturer trust is loaded, refreshed and swapped
// on reload.
func Example() {
	var (
		authority     est.CA      // the ca package's authority
		db            store.Store // the store (Approvals is a subset)
		serverCerts   func() []*tls.Certificate
		logger        = slog.Default()
		ctx, shutdown = context.WithCancel(context.Background())
	)
	defer shutdown()

	trust, err := est.LoadTrust(ctx, est.TrustConfig{
		RootFiles:  []string{"/etc/nmos-certs/manufacturers/maker-a.pem"},
		CRLSources: []string{"http://crl.maker-a.example/devices.crl"},
		Logger:     logger,
	})
	if err != nil {
		logger.Error("manufacturer trust", "error", err)
		return
	}
	go trust.Run(ctx) // CRLs refreshed by their nextUpdate

	srv, err := est.New(est.Options{
		CA:             authority,
		Approvals:      db,
		Trust:          trust,
		Logger:         logger,
		Registerer:     prometheus.DefaultRegisterer,
		Labels:         []string{"nmos"},
		ManualApproval: true,
		RetryAfter:     time.Minute,
		KeySigner:      func() *tls.Certificate { return serverCerts()[0] },
	})
	if err != nil {
		logger.Error("est server", "error", err)
		return
	}
	hs := &http.Server{
		Addr:              ":8443",
		Handler:           srv, // answers 404 outside /.well-known/est/
		TLSConfig:         est.TLSConfig(serverCerts),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
	}
	go hs.ListenAndServeTLS("", "") // certificates come from TLSConfig

	// On reload: srv.SetTrust(newTrust). On a CA rollover: srv.Invalidate().
}
