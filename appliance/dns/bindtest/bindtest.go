// Package bindtest starts BIND 9 for tests: a primary that takes
// dynamic updates, or a secondary that copies a zone, on 127.0.0.1.
package bindtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Named finds BIND's server, or stops the test naming the package.
func Named(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("named"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/named"); err == nil {
		return "/usr/sbin/named"
	}
	t.Fatal("BIND is not installed: apt-get install bind9 (make test does) to run the RFC 2136 and zone transfer tests")
	return ""
}

// FreePort is a port free on 127.0.0.1 for both UDP and TCP, for a
// server that cannot be told to pick its own.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// Secret is a fresh 32-byte key.
func Secret(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Server is a BIND 9 server started by a test on 127.0.0.1.
type Server struct {
	dir  string
	port int
	log  *syncBuffer
}

// Start runs named in the foreground on a free port of 127.0.0.1,
// with the configuration zones adds to its options (keys and zone
// statements) and the files it names, and stops it when the test ends.
func Start(t testing.TB, zones string, files map[string]string) *Server {
	t.Helper()
	for attempt := 0; ; attempt++ {
		b, err := run(t, FreePort(t), zones, files)
		if err == nil {
			return b
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address in use") {
			t.Fatal(err)
		}
	}
}

// StartOn is Start on a port chosen before (the appliance must
// name it for its NOTIFY).
func StartOn(t testing.TB, port int, zones string) *Server {
	t.Helper()
	b, err := run(t, port, zones, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t testing.TB, port int, zones string, files map[string]string) (*Server, error) {
	t.Helper()
	exe := Named(t)
	b := &Server{dir: t.TempDir(), port: port, log: &syncBuffer{}}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
	allow-transfer { none; };
};
controls { };
%[3]s
`, b.dir, b.port, zones)
	confPath := filepath.Join(b.dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-g", "-c", confPath, "-n", "1")
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start named: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	// Ready when it says so and answers on TCP.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			return nil, fmt.Errorf("named stopped: %v\n%s", err, b.Log())
		default:
		}
		if !strings.Contains(b.Log(), "running") {
			continue
		}
		if c, err := net.DialTimeout("tcp", b.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			return b, nil
		}
	}
	return nil, fmt.Errorf("named did not start:\n%s", b.Log())
}

// Addr is the server's address, 127.0.0.1:PORT.
func (b *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// Dig asks a server with dig (BIND's own client), -y KEY when key is set.
func Dig(t testing.TB, server string, key string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	all := []string{"@" + host, "-p", port, "+time=3", "+tries=1"}
	if key != "" {
		all = append(all, "-y", key)
	}
	out, _ := exec.Command("dig", append(all, args...)...).CombinedOutput()
	return string(out)
}

// DigShort is dig +short, sorted lines.
func DigShort(t testing.TB, server string, args ...string) []string {
	t.Helper()
	out := strings.TrimSpace(Dig(t, server, "", append([]string{"+short"}, args...)...))
	if out == "" {
		return nil
	}
	lines := strings.Split(out, "\n")
	slices.Sort(lines)
	return lines
}

// Log is what named printed.
func (b *Server) Log() string { return b.log.String() }

// syncBuffer collects output written from another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
