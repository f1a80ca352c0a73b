package app

import (
	"net"
	"net/http"
	"runtime"
	"sync"
)

// connGauge counts a server's connections that are being handshaken or
// are carrying a request (net/http's StateNew and StateActive), not
// those idle between requests. It tells the store when enrollments are
// queueing for the CPU, so that its commits can wait for one another
// (store.SQLite.SetBusy).
type connGauge struct {
	mu     sync.Mutex
	states map[net.Conn]http.ConnState
	n      int
}

func (g *connGauge) track(c net.Conn, st http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.states == nil {
		g.states = make(map[net.Conn]http.ConnState)
	}
	prev, known := g.states[c]
	busy := func(s http.ConnState) bool { return s == http.StateNew || s == http.StateActive }
	if known && busy(prev) {
		g.n--
	}
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(g.states, c)
		return
	}
	g.states[c] = st
	if busy(st) {
		g.n++
	}
}

func (g *connGauge) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// busy reports more connections at work than twice the CPUs the Go
// runtime uses: enough that while one certificate waits for others to
// share its commit, the CPUs have other requests to get on with.
func (g *connGauge) busy() bool {
	return g.count() > 2*runtime.GOMAXPROCS(0)
}
