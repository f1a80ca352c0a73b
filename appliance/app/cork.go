package app

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"syscall"
)

// connKey is the context key under which a server's ConnContext keeps the
// request's connection.
type connKey struct{}

// withConn is an http.Server's ConnContext: it keeps the connection in
// the requests' context for corkOnClose.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// corkOnClose wraps h so that the answer to a request after which the
// server closes the connection (Connection: close, as an EST client
// enrolling over a new connection sends it, or HTTP/1.0 without
// keep-alive) leaves in one TCP segment with the TLS close_notify and the
// FIN, where it took three. net/http holds a handler's first few
// kilobytes of answer until the handler returns; the connection is
// corked (TCP_CORK, Linux) then, before they are written, and net/http
// closes it right after, which sends everything queued. Corking only
// once the handler is done leaves alone what it writes while it runs,
// such as a 100 Continue. Each segment saved is a packet the kernel does
// not build and the peer does not wake up for. The kernel sends corked
// data after 200 ms at the latest, so a connection that outlives its
// answer is delayed, never stuck.
func corkOnClose(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Close {
			if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
				corkConn(c)
			}
		}
	})
}

// corkConn is cork; tests replace it to see when it is called.
var corkConn = cork

// cork sets TCP_CORK on c's socket (under TLS, the connection's), where
// the system has it; a failure only leaves the segments as they were.
func cork(c net.Conn) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	if raw, err := sc.SyscallConn(); err == nil {
		_ = raw.Control(setCork)
	}
}
