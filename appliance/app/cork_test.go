//go:build linux

package app

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// corkState reads TCP_CORK from the socket under c.
func corkState(c net.Conn) (int, error) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0, err
	}
	v, serr := 0, error(nil)
	if err := raw.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
	}); err != nil {
		return 0, err
	}
	return v, serr
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestCorkOnClose: over TLS and plain TCP, a request on a connection kept
// alive is answered uncorked, and the connection serves another; a
// request with Connection: close is answered corked, and the client gets
// the whole answer and then the end of the connection.
func TestCorkOnClose(t *testing.T) {
	for _, useTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
			if useTLS {
				l = tls.NewListener(l, cfg)
			}
			body := make([]byte, 3000)
			s := &http.Server{ConnContext: withConn, Handler: corkOnClose(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				v, err := corkState(r.Context().Value(connKey{}).(net.Conn))
				if err != nil {
					t.Error(err)
				}
				w.Header().Set("X-Cork", strconv.Itoa(v))
				w.Write(body)
			}))}
			go s.Serve(l)
			defer s.Close()

			var c net.Conn
			if useTLS {
				c, err = tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
			} else {
				c, err = net.Dial("tcp", l.Addr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for i, close := range []bool{false, false, true} {
				req := "GET / HTTP/1.1\r\nHost: test\r\n"
				if close {
					req += "Connection: close\r\n"
				}
				if _, err := io.WriteString(c, req+"\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || len(got) != len(body) {
					t.Fatalf("request %d: %d of %d bytes, %v", i, len(got), len(body), err)
				}
				want := "0"
				if close {
					want = "1"
				}
				if v := resp.Header.Get("X-Cork"); v != want {
					t.Errorf("request %d (Connection: close %v): TCP_CORK %s, want %s", i, close, v, want)
				}
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("after the closing answer: %d bytes, %v; want the end of the connection", n, err)
			}
		})
	}
}
