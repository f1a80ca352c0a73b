package app

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// secretish is a value that says, through LogValue, what a log may show
// of it.
type secretish struct{ secret string }

func (secretish) LogValue() slog.Value { return slog.StringValue("[hidden]") }

// TestRecentLog: the dashboard's list keeps warnings and errors with
// their component, resolves LogValuers, counts repeats in a row, leaves
// out CoreDNS's per-query errors, and passes every record on.
func TestRecentLog(t *testing.T) {
	var out strings.Builder
	l := &recentLog{max: 3}
	log := slog.New(recentHandler{next: slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}), log: l})
	store := log.With("component", "store")
	store.Info("opened")
	store.Warn("slow commit", "key", secretish{"k"}, "ms", 900)
	store.Warn("slow commit", "key", secretish{"k"}, "ms", 950)
	log.With("component", "dns").Error("plugin/errors: 2 cam1.example.test. A: read udp: timeout")
	log.With("component", "ca").WithGroup("crl").Error("rebuild failed", "issuer", "ecdsa-int-1")
	got := l.list()
	if len(got) != 2 {
		t.Fatalf("kept %+v", got)
	}
	ca, st := got[0], got[1]
	if ca.Component != "ca" || ca.Message != "rebuild failed" || ca.Detail != "component=ca crl.issuer=ecdsa-int-1" || ca.Level != "ERROR" || ca.Count != 1 {
		t.Errorf("newest: %+v", ca)
	}
	if st.Component != "store" || st.Count != 2 || st.Detail != "component=store key=[hidden] ms=950" {
		t.Errorf("repeated: %+v", st)
	}
	if strings.Contains(st.Detail, "{k}") || st.At.IsZero() || time.Since(st.At) > time.Minute {
		t.Errorf("detail %q at %v", st.Detail, st.At)
	}
	for _, want := range []string{"msg=opened", "msg=\"slow commit\"", "plugin/errors", "crl.issuer=ecdsa-int-1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the logger's handler did not get %q:\n%s", want, out.String())
		}
	}
	// The list holds max entries, the newest.
	for _, m := range []string{"a", "b", "c", "d"} {
		store.Warn(m)
	}
	if got := l.list(); len(got) != 3 || got[0].Message != "d" || got[2].Message != "b" {
		t.Errorf("after more: %+v", got)
	}
}
