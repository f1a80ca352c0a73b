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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// corkState reads TCP_CORK from the socket under c.
func corkState(t *testing.T, c net.Conn) int {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v, serr := 0, error(nil)
	if err := raw.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v
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

// TestCork: cork sets TCP_CORK on a TCP connection and on the one under
// a TLS connection.
func TestCork(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan []net.Conn)
	go func() {
		var conns []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				accepted <- conns
				return
			}
			conns = append(conns, c)
		}
	}()
	defer func() {
		l.Close()
		for _, c := range <-accepted {
			c.Close()
		}
	}()
	for _, wrap := range []bool{false, true} {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var conn net.Conn = c
		if wrap {
			conn = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		}
		if v := corkState(t, conn); v != 0 {
			t.Fatalf("TCP_CORK %d before cork", v)
		}
		cork(conn)
		if v := corkState(t, conn); v != 1 {
			t.Errorf("tls=%v: TCP_CORK %d after cork, want 1", wrap, v)
		}
		c.Close()
	}
}

// TestCorkOnClose: over TLS and plain TCP, requests on a connection kept
// alive are answered without corking it; a request with Connection:
// close (one with Expect: 100-continue too) has its connection corked
// once its handler has returned, and the client gets the whole answer,
// then the end of the connection.
func TestCorkOnClose(t *testing.T) {
	var mu sync.Mutex
	var events []string
	record := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	corkConn = func(c net.Conn) { record("cork"); cork(c) }
	t.Cleanup(func() { corkConn = cork })

	for _, useTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			mu.Lock()
			events = nil
			mu.Unlock()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if useTLS {
				l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
			}
			answer := strings.Repeat("a", 3000)
			s := &http.Server{ConnContext: withConn, Handler: corkOnClose(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				record("handled " + string(body))
				io.WriteString(w, answer)
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
			read := func(i int) {
				t.Helper()
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != answer {
					t.Fatalf("request %d: %d of %d bytes, %v", i, len(got), len(answer), err)
				}
			}
			for i := range 2 {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
				read(i)
			}
			// Closing, and waiting for a 100 Continue before the body.
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
				t.Fatalf("before the body: %q, %v", line, err)
			}
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "body")
			read(2)
			if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("after the closing answer: %d bytes, %v; want the end of the connection", n, err)
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"handled ", "handled ", "handled body", "cork"}
			if fmt.Sprint(events) != fmt.Sprint(want) {
				t.Errorf("events %q, want %q", events, want)
			}
		})
	}
}
