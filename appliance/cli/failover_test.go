package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/globalsign/est"
	mdns "github.com/miekg/dns"

	"github.com/nmos-certs/nmos-certs/appliance/dns/bindtest"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ca/store/pgtest"
)

// servedNode is one `nmos-certs serve` process of the failover test.
type servedNode struct {
	cfg                     string
	est, dns, metrics, http int
	cmd                     *exec.Cmd
	done                    chan error
	log                     lockedBuffer
}

// lockedBuffer is a buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// start runs the node's serve and waits until /readyz says ready.
func (n *servedNode) start(t *testing.T, bin string) {
	t.Helper()
	n.log.Reset()
	n.cmd = exec.Command(bin, "serve", "--config", n.cfg)
	n.cmd.Stdout, n.cmd.Stderr = &n.log, &n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(n.cmd, n.done)
	t.Cleanup(func() { n.kill() })
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", n.metrics))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-n.done:
			t.Fatalf("serve %s stopped: %v\n%s", n.cfg, err, n.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve %s is not ready:\n%s", n.cfg, n.log.String())
		}
	}
}

// kill ends the process with SIGKILL: no shutdown, no flush.
func (n *servedNode) kill() {
	if n.cmd != nil && n.cmd.ProcessState == nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
		n.cmd = nil
	}
}

// TestFailover: two `nmos-certs serve` processes share one PostgreSQL
// database and name each other in dns.peers (A pri 10, B pri 20). Devices
// find the EST instances by DNS-SD (at B's DNS server, which lists both),
// try them in pri order, and enroll without pause. A is killed with
// SIGKILL in the middle: the devices go on at B without one failing;
// every certificate a device received is in the database; A, started
// again, serves again.
func TestFailover(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "nmos-certs")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cluster := pgtest.Start(t)
	dsnFile := filepath.Join(dir, "dsn")
	dsn := cluster.NewDatabase(t)
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	// A manufacturer whose devices enroll.
	mkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mtmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Maker Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	mder, _ := x509.CreateCertificate(rand.Reader, mtmpl, mtmpl, mkey.Public(), mkey)
	mcert, _ := x509.ParseCertificate(mder)
	roots := filepath.Join(dir, "maker.pem")
	if err := os.WriteFile(roots, pemCert(mder), 0o644); err != nil {
		t.Fatal(err)
	}

	nodes := map[string]*servedNode{}
	for _, name := range []string{"a", "b"} {
		nodes[name] = &servedNode{est: bindtest.FreePort(t), dns: bindtest.FreePort(t), metrics: bindtest.FreePort(t), http: bindtest.FreePort(t)}
	}
	pri := map[string]int{"a": 10, "b": 20}
	for name, n := range nodes {
		other := "b"
		if name == "b" {
			other = "a"
		}
		o := nodes[other]
		n.cfg = filepath.Join(dir, name+".yaml")
		y := fmt.Sprintf(`hostname: est-%[1]s.studio.example.test
addresses: [127.0.0.1]
data_dir: %[2]s
listen:
  est: 127.0.0.1:%[3]d
  http: 127.0.0.1:%[4]d
  dns: 127.0.0.1:%[5]d
  metrics: 127.0.0.1:%[6]d
  web: "off"
ca:
  base_url: http://127.0.0.1:%[4]d
est:
  trusted_client_roots: [%[7]s]
dns:
  advertise:
    - pri: %[8]d
  peers:
    - hostname: est-%[9]s.studio.example.test
      addresses: [127.0.0.1]
      port: %[10]d
      pri: %[11]d
store:
  driver: postgres
  dsn_file: %[12]s
log:
  level: warn
`, name, filepath.Join(dir, "data-"+name), n.est, n.http, n.dns, n.metrics, roots, pri[name], other, o.est, pri[other], dsnFile)
		if err := os.WriteFile(n.cfg, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, b := nodes["a"], nodes["b"]
	a.start(t, bin)
	// The CA's keys go to B by backup and restore.
	keys := filepath.Join(dir, "keys.tar")
	if r := run(t, "backup", "--config", a.cfg, "--out", keys); r.code != 0 {
		t.Fatalf("backup: %+v", r)
	}
	if r := run(t, "restore", "--config", b.cfg, "--in", keys); r.code != 0 {
		t.Fatalf("restore: %+v", r)
	}
	b.start(t, bin)

	// Devices: DNS-SD at B's server, then the instances in pri order.
	instances := func() []int {
		c := &mdns.Client{Net: "tcp", Timeout: 2 * time.Second}
		m := new(mdns.Msg)
		m.SetQuestion("_nmos-certs._tcp.studio.example.test.", mdns.TypePTR)
		r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", b.dns))
		if err != nil {
			return nil
		}
		type srv struct{ pri, port int }
		var srvs []srv
		for _, rr := range r.Answer {
			q := new(mdns.Msg)
			q.SetQuestion(rr.(*mdns.PTR).Ptr, mdns.TypeSRV)
			if s, _, err := c.Exchange(q, fmt.Sprintf("127.0.0.1:%d", b.dns)); err == nil && len(s.Answer) == 1 {
				x := s.Answer[0].(*mdns.SRV)
				srvs = append(srvs, srv{int(x.Priority), int(x.Port)})
			}
		}
		slices.SortFunc(srvs, func(x, y srv) int { return x.pri - y.pri })
		var ports []int
		for _, s := range srvs {
			ports = append(ports, s.port)
		}
		return ports
	}
	if got := instances(); !slices.Equal(got, []int{a.est, b.est}) {
		t.Fatalf("DNS-SD lists %v, want A then B %v", got, []int{a.est, b.est})
	}

	var (
		mu       sync.Mutex
		received []*x509.Certificate
		failed   []error
		count    atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		dkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		dtmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(10 + w)), Subject: pkix.Name{CommonName: "device", SerialNumber: fmt.Sprint("D", w)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		dder, _ := x509.CreateCertificate(rand.Reader, dtmpl, mcert, dkey.Public(), mkey)
		dcert, _ := x509.ParseCertificate(dder)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var last error
				ok := false
				for _, port := range instances() {
					// A new key for each attempt: a request that reached A
					// just before it died may be on record with its key.
					k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
					csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("w%d-%d.studio.example.test", w, i)},
						DNSNames: []string{fmt.Sprintf("w%d-%d.studio.example.test", w, i)}}, k)
					req, _ := x509.ParseCertificateRequest(csr)
					c := &est.Client{Host: fmt.Sprintf("127.0.0.1:%d", port), InsecureSkipVerify: true, Certificates: []*x509.Certificate{dcert}, PrivateKey: dkey}
					rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
					cert, err := c.Enroll(rctx, req)
					rcancel()
					if err == nil {
						mu.Lock()
						received = append(received, cert)
						mu.Unlock()
						count.Add(1)
						ok = true
						break
					}
					last = err
				}
				if !ok {
					mu.Lock()
					failed = append(failed, fmt.Errorf("device %d, request %d: %v", w, i, last))
					mu.Unlock()
				}
			}
		}()
	}
	waitCount := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); count.Load() < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("%d enrollments, waiting for %d; failures %v", count.Load(), n, failed)
			}
		}
	}
	waitCount(30)
	a.kill()
	killedAt := count.Load()
	waitCount(killedAt + 30)
	cancel()
	wg.Wait()
	if len(failed) != 0 {
		t.Fatalf("%d requests failed while A died: %v", len(failed), failed)
	}

	// Every certificate a device received is on record.
	st, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range received {
		if _, err := st.Certificate(context.Background(), c.SerialNumber); err != nil {
			t.Fatalf("%s was received but is not in the database: %v", store.SerialKey(c.SerialNumber), err)
		}
	}
	t.Logf("%d certificates received, %d after A was killed; none lost", len(received), int64(len(received))-killedAt)

	// A starts again and serves.
	a.start(t, bin)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dtmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "device", SerialNumber: "D99"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	dder, _ := x509.CreateCertificate(rand.Reader, dtmpl, mcert, dkey.Public(), mkey)
	dcert, _ := x509.ParseCertificate(dder)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "again.studio.example.test"}, DNSNames: []string{"again.studio.example.test"}}, k)
	req, _ := x509.ParseCertificateRequest(csr)
	c := &est.Client{Host: fmt.Sprintf("127.0.0.1:%d", a.est), InsecureSkipVerify: true, Certificates: []*x509.Certificate{dcert}, PrivateKey: dkey}
	if _, err := c.Enroll(context.Background(), req); err != nil {
		t.Fatalf("A after its restart: %v\n%s", err, a.log.String())
	}
}
