package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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

// servedPair is two `nmos-certs serve` processes on one PostgreSQL
// database, each naming the other in dns.peers (A pri 10, B pri 20), the
// CA's keys taken from A to B by backup and restore, and a manufacturer
// whose devices they trust.
type servedPair struct {
	dir, bin, dsn string
	a, b          *servedNode
	mkey          *ecdsa.PrivateKey
	mcert         *x509.Certificate
}

func startPair(t *testing.T) *servedPair {
	t.Helper()
	p := &servedPair{dir: t.TempDir()}
	dir := p.dir
	p.bin = filepath.Join(dir, "nmos-certs")
	if out, err := exec.Command("go", "build", "-o", p.bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin := p.bin
	cluster := pgtest.Start(t)
	dsnFile := filepath.Join(dir, "dsn")
	p.dsn = cluster.NewDatabase(t)
	if err := os.WriteFile(dsnFile, []byte(p.dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	// A manufacturer whose devices enroll.
	p.mkey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mtmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Maker Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	mder, _ := x509.CreateCertificate(rand.Reader, mtmpl, mtmpl, p.mkey.Public(), p.mkey)
	p.mcert, _ = x509.ParseCertificate(mder)
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
	p.a, p.b = a, b
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
	return p
}

// device is a device certificate of the pair's manufacturer and its key.
func (p *servedPair) device(t *testing.T, serial int64) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	dkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dtmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "device", SerialNumber: fmt.Sprint("D", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	dder, err := x509.CreateCertificate(rand.Reader, dtmpl, p.mcert, dkey.Public(), p.mkey)
	if err != nil {
		t.Fatal(err)
	}
	dcert, _ := x509.ParseCertificate(dder)
	return dcert, dkey
}

// TestFailover: two `nmos-certs serve` processes share one PostgreSQL
// database and name each other in dns.peers (A pri 10, B pri 20). Devices
// find the EST instances by DNS-SD (at B's DNS server, which lists both),
// try them in pri order, and enroll without pause. A is killed with
// SIGKILL in the middle: the devices go on at B without one failing;
// every certificate a device received is in the database; A, started
// again, serves again.
func TestFailover(t *testing.T) {
	p := startPair(t)
	a, b, bin, dsn := p.a, p.b, p.bin, p.dsn

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
		dcert, dkey := p.device(t, int64(10+w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var last error
				ok := false
				// One request, tried at each instance in turn: if it reached
				// A just before A died, it may be on record there, and B
				// answers it with that certificate.
				k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("w%d-%d.studio.example.test", w, i)},
					DNSNames: []string{fmt.Sprintf("w%d-%d.studio.example.test", w, i)}}, k)
				req, _ := x509.ParseCertificateRequest(csr)
				for _, port := range instances() {
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
	dcert, dkey := p.device(t, 99)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "again.studio.example.test"}, DNSNames: []string{"again.studio.example.test"}}, k)
	req, _ := x509.ParseCertificateRequest(csr)
	c := &est.Client{Host: fmt.Sprintf("127.0.0.1:%d", a.est), InsecureSkipVerify: true, Certificates: []*x509.Certificate{dcert}, PrivateKey: dkey}
	if _, err := c.Enroll(context.Background(), req); err != nil {
		t.Fatalf("A after its restart: %v\n%s", err, a.log.String())
	}
}

// TestTwoAppliancesTenThousand: 10,000 enrollments at full speed, half on
// each appliance of a pair sharing one PostgreSQL database, by estload (a
// new TLS connection and key each, 8 clients per appliance, built without
// the race detector like the appliances). Every certificate received has
// its own serial, and is in the database; the database holds exactly
// those (and the appliances' own).
func TestTwoAppliancesTenThousand(t *testing.T) {
	const each = 5000
	p := startPair(t)
	estload := filepath.Join(p.dir, "estload")
	if out, err := exec.Command("go", "build", "-o", estload, "../../bench/est/estload").CombinedOutput(); err != nil {
		t.Fatalf("go build estload: %v\n%s", err, out)
	}
	st, err := store.OpenPostgres(context.Background(), p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before, err := st.CountCertificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		out     []byte
		err     error
		serials string
	}
	runs := make([]run, 2)
	var wg sync.WaitGroup
	for i, n := range []*servedNode{p.a, p.b} {
		dcert, dkey := p.device(t, int64(100+i))
		certFile, keyFile := filepath.Join(p.dir, fmt.Sprintf("device%d.pem", i)), filepath.Join(p.dir, fmt.Sprintf("device%d.key", i))
		kder, _ := x509.MarshalPKCS8PrivateKey(dkey)
		if err := os.WriteFile(certFile, pemCert(dcert.Raw), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			t.Fatal(err)
		}
		runs[i].serials = filepath.Join(p.dir, fmt.Sprintf("serials%d.txt", i))
		wg.Go(func() {
			cmd := exec.Command(estload, "-server", fmt.Sprintf("127.0.0.1:%d", n.est), "-insecure", "-cert", certFile, "-key-file", keyFile,
				"-c", "8", "-n", fmt.Sprint(each), "-pool", fmt.Sprint(each), "-serials", runs[i].serials, "-domain", fmt.Sprintf("node%d.studio.example.test", i), "-out", "json", "-label", fmt.Sprint("node ", i))
			runs[i].out, runs[i].err = cmd.CombinedOutput()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, r := range runs {
		if r.err != nil {
			t.Fatalf("estload at node %d: %v\n%s", i, r.err, r.out)
		}
		var rep struct {
			Enrollments int     `json:"enrollments"`
			PerSecond   float64 `json:"enroll_per_s"`
			ErrorCount  int     `json:"error_count"`
		}
		if err := json.Unmarshal(r.out, &rep); err != nil {
			t.Fatalf("estload's report: %v\n%s", err, r.out)
		}
		if rep.Enrollments != each || rep.ErrorCount != 0 {
			t.Fatalf("node %d: %d enrollments, %d errors\n%s", i, rep.Enrollments, rep.ErrorCount, r.out)
		}
		t.Logf("node %d: %d enrollments, %.0f/s", i, rep.Enrollments, rep.PerSecond)
		b, err := os.ReadFile(r.serials)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(string(b))
		if len(lines) != each {
			t.Fatalf("node %d: %d serials written, want %d", i, len(lines), each)
		}
		for _, s := range lines {
			if seen[s] {
				t.Fatalf("serial %s received twice", s)
			}
			seen[s] = true
		}
	}
	for s := range seen {
		n, ok := new(big.Int).SetString(s, 16)
		if !ok {
			t.Fatalf("serial %q", s)
		}
		if _, err := st.Certificate(context.Background(), n); err != nil {
			t.Fatalf("%s was received but is not in the database: %v", s, err)
		}
	}
	after, err := st.CountCertificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := func(m map[string]int) (n int) {
		for _, c := range m {
			n += c
		}
		return n
	}
	// The appliances may renew their own certificates meanwhile; the
	// devices' are exactly the 10,000.
	if got := total(after) - total(before); got < 2*each || got > 2*each+4 {
		t.Fatalf("%d certificates recorded during the load, want %d", got, 2*each)
	}
}
