package app

import (
	"net"
	"net/http"
	"runtime"
	"testing"
)

func TestConnGauge(t *testing.T) {
	var g connGauge
	a, b := &net.TCPConn{}, &net.TCPConn{}
	steps := []struct {
		c    net.Conn
		st   http.ConnState
		want int
	}{
		{a, http.StateNew, 1},
		{b, http.StateNew, 2},
		{a, http.StateActive, 2},
		{a, http.StateIdle, 1}, // between requests: not at work
		{a, http.StateActive, 2},
		{b, http.StateClosed, 1},
		{a, http.StateHijacked, 0},
		{b, http.StateClosed, 0}, // closed twice: no harm
	}
	for i, s := range steps {
		g.track(s.c, s.st)
		if got := g.count(); got != s.want {
			t.Fatalf("step %d (%v): %d connections at work, want %d", i, s.st, got, s.want)
		}
	}
	if len(g.states) != 0 {
		t.Fatalf("%d connections remembered after all closed", len(g.states))
	}
	conns := make([]net.Conn, 2*runtime.GOMAXPROCS(0)+1)
	for i := range conns {
		conns[i] = &net.TCPConn{}
		if g.busy() {
			t.Fatalf("busy with %d connections", i)
		}
		g.track(conns[i], http.StateNew)
	}
	if !g.busy() {
		t.Fatalf("not busy with %d connections", len(conns))
	}
}
