package cli

import (
	"context"
	"encoding/pem"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
)

func openAuthority(t *testing.T, cfgPath string) (*ca.Authority, func()) {
	t.Helper()
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, st, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), time.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	return a, func() { st.Close() }
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
