// Command crlbench measures what building a CRL costs the appliance: the
// time, the bytes allocated, and the memory it needs at its peak, for an
// ECDSA intermediate with -n revoked certificates. bench/crl/run.sh runs
// it once per size, each in a process of its own so that the peak
// resident size is that size's alone.
//
// The build is the appliance's own: ocsp.NewPublisher over a Source, and
// Publisher.Rebuild, which reads the revocations, encoding each as it
// arrives, asks for the next CRL number and signs. The Source streams the
// revocations one by one as the store does (the same -n random 159-bit
// serials, from a fixed seed, on every build; half with reason
// keyCompromise, half without a reason), so no list of them is held
// outside the publisher. The publisher builds once when it is made; the
// builds measured are the -builds rebuilds after that, each from a
// collected heap, with the CRL of the previous build still held for
// serving, as in the appliance.
//
// Unless GOGC is set it runs with GOGC=400, as "nmos-certs serve" does.
//
//	go run ./bench/crl -n 100000 -builds 2
package main

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nmos-certs/nmos-certs/bench/internal/benchutil"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ocsp"
)

const issuerID = "ecdsa-int-1"

// Report is what a run prints.
type Report struct {
	Revoked int `json:"revoked"`
	Builds  int `json:"builds"`
	GOGC    int `json:"gogc"`
	// BuildSeconds is each measured build; Seconds their median.
	BuildSeconds []float64 `json:"build_seconds"`
	Seconds      float64   `json:"seconds"`
	// AllocMB and Mallocs are allocated per build (median), from
	// runtime.MemStats: everything the build asked for, most of it
	// garbage soon after.
	AllocMB float64 `json:"alloc_mb"`
	Mallocs uint64  `json:"mallocs"`
	// PeakHeapMB is the largest heap (bytes in objects, live or not
	// yet swept) seen during a build, sampled every millisecond; it
	// depends on GOGC. PeakLiveMB is the largest live heap the
	// collector found at the end of a cycle during a build: a lower
	// bound of what the build needs, closer to it the more often the
	// collector runs (the smaller GOGC).
	PeakHeapMB float64 `json:"peak_heap_mb"`
	PeakLiveMB float64 `json:"peak_live_mb"`
	// HeldMB is the live heap after the builds and a collection: the
	// CRL kept for serving (DER and PEM) and the rest of the program.
	HeldMB float64 `json:"held_mb"`
	// RSSBeforeMB is the resident size before a build (median), after
	// a collection that returned free memory to the OS; PeakRSSMB is
	// the largest peak resident size (VmHWM) during a build.
	RSSBeforeMB float64 `json:"rss_before_mb"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	// PeakRSSReset tells whether the kernel let the peak be reset
	// before each build (/proc/self/clear_refs); if not, it covers the
	// whole process, the publisher's first build included.
	PeakRSSReset bool `json:"peak_rss_reset"`
	CRLBytes     int  `json:"crl_bytes"`
	// Entries is the number of entries of the CRL served, parsed (with
	// -check; 0 without).
	Entries int `json:"entries"`
}

func main() {
	n := flag.Int("n", 100000, "revoked certificates")
	builds := flag.Int("builds", 2, "builds to measure, after the publisher's first")
	out := flag.String("out", "text", "report format: text or json")
	check := flag.Bool("check", true, "parse the CRL served and check its entries and signature")
	flag.Parse()
	if err := run(*n, *builds, *out, *check); err != nil {
		fmt.Fprintln(os.Stderr, "crlbench:", err)
		os.Exit(1)
	}
}

func run(n, builds int, out string, check bool) error {
	if n < 1 || builds < 1 {
		return errors.New("-n and -builds must be at least 1")
	}
	if out != "text" && out != "json" {
		return fmt.Errorf("-out %q: want text or json", out)
	}
	gogc := 400
	if v := os.Getenv("GOGC"); v != "" {
		g, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("GOGC=%q: this tool wants a number", v)
		}
		gogc = g
	} else {
		debug.SetGCPercent(gogc)
	}
	ctx := context.Background()
	inter, key, err := newIntermediate()
	if err != nil {
		return err
	}
	src := &streamSource{n: n, issuer: ocsp.Issuer{ID: issuerID, Cert: inter, Signer: key}, at: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}
	p, err := ocsp.NewPublisher(ctx, ocsp.Options{
		Source: src,
		Logger: slog.New(slog.DiscardHandler),
		CRLURL: func(id string) string { return "http://est.studio.example.test:8080/crl/" + id + ".crl" },
	})
	if err != nil {
		return err
	}

	rep := Report{Revoked: n, Builds: builds, GOGC: gogc}
	var allocs, before []float64
	var mallocs []uint64
	for range builds {
		// Each build starts from a collected heap whose free memory went
		// back to the OS, as after a quiet spell in the appliance (the Go
		// runtime collects at least every two minutes and returns memory
		// it no longer uses).
		runtime.GC()
		debug.FreeOSMemory()
		rss, err := vm("VmRSS")
		if err != nil {
			return err
		}
		before = append(before, rss)
		rep.PeakRSSReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
		s := startSampler()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		err = p.Rebuild(ctx, issuerID)
		took := time.Since(start)
		runtime.ReadMemStats(&m1)
		heap, live := s.stop()
		if err != nil {
			return err
		}
		hwm, err := vm("VmHWM")
		if err != nil {
			return err
		}
		rep.BuildSeconds = append(rep.BuildSeconds, round(took.Seconds(), 3))
		allocs = append(allocs, float64(m1.TotalAlloc-m0.TotalAlloc)/1e6)
		mallocs = append(mallocs, m1.Mallocs-m0.Mallocs)
		rep.PeakHeapMB = max(rep.PeakHeapMB, round(float64(heap)/1e6, 1))
		rep.PeakLiveMB = max(rep.PeakLiveMB, round(float64(live)/1e6, 1))
		rep.PeakRSSMB = max(rep.PeakRSSMB, hwm)
	}
	runtime.GC()
	rep.HeldMB = round(float64(readMetric("/gc/heap/live:bytes"))/1e6, 1)
	rep.Seconds = round(median(rep.BuildSeconds), 3)
	rep.AllocMB = round(median(allocs), 1)
	rep.RSSBeforeMB = round(median(before), 1)
	slices.Sort(mallocs)
	rep.Mallocs = mallocs[len(mallocs)/2]

	// The CRL as the appliance serves it, checked.
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/crl/"+issuerID+".crl", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("GET the CRL: %d", rec.Code)
	}
	der := rec.Body.Bytes()
	rep.CRLBytes = len(der)
	if check {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return err
		}
		if err := crl.CheckSignatureFrom(inter); err != nil {
			return err
		}
		if rep.Entries = len(crl.RevokedCertificateEntries); rep.Entries != n {
			return fmt.Errorf("the CRL has %d entries, want %d", rep.Entries, n)
		}
	}

	if out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printText(os.Stdout, &rep)
	return nil
}

func printText(w io.Writer, r *Report) {
	fmt.Fprintf(w, "CRL of %d revoked certificates (GOGC=%d), %d builds\n", r.Revoked, r.GOGC, r.Builds)
	fmt.Fprintf(w, "  build       %.3f s (median of %v)\n", r.Seconds, r.BuildSeconds)
	fmt.Fprintf(w, "  allocated   %.1f MB in %d allocations per build\n", r.AllocMB, r.Mallocs)
	fmt.Fprintf(w, "  peak heap   %.1f MB (live at most %.1f MB); %.1f MB held after\n", r.PeakHeapMB, r.PeakLiveMB, r.HeldMB)
	fmt.Fprintf(w, "  RSS         %.1f MB before, %.1f MB peak (reset %v)\n", r.RSSBeforeMB, r.PeakRSSMB, r.PeakRSSReset)
	fmt.Fprintf(w, "  CRL         %d bytes, %d entries\n", r.CRLBytes, r.Entries)
}

// sampler records the largest heap figures while builds run.
type sampler struct {
	done       chan struct{}
	wg         sync.WaitGroup
	heap, live atomic.Uint64
}

func startSampler() *sampler {
	s := &sampler{done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() {
		metrics.Read(samples)
		if v := samples[0].Value.Uint64(); v > s.heap.Load() {
			s.heap.Store(v)
		}
		if v := samples[1].Value.Uint64(); v > s.live.Load() {
			s.live.Store(v)
		}
	}
	read()
	s.wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				read()
				return
			case <-t.C:
				read()
			}
		}
	})
	return s
}

func (s *sampler) stop() (heap, live uint64) {
	close(s.done)
	s.wg.Wait()
	return s.heap.Load(), s.live.Load()
}

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// vm is a field of /proc/self/status in MB.
func vm(field string) (float64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return round(kb*1024/1e6, 1), err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round(x float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}

// newIntermediate makes an ECDSA P-256 intermediate under a P-384 root,
// the shape of the appliance's ECDSA hierarchy.
func newIntermediate() (*x509.Certificate, crypto.Signer, error) {
	now := time.Now()
	root, rootKey, err := benchutil.NewCert(elliptic.P384(), &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nmos-certs ECDSA Root CA 1", Organization: []string{"nmos-certs"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	cert, key, err := benchutil.NewCert(elliptic.P256(), &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "nmos-certs ECDSA Intermediate CA 1", Organization: []string{"nmos-certs"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, root, rootKey)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// streamSource is an ocsp.Source whose one issuer revoked n certificates.
// Revocations makes them afresh on every call, from a fixed seed.
type streamSource struct {
	n      int
	issuer ocsp.Issuer
	at     time.Time
	number atomic.Int64
}

func (s *streamSource) Issuers(context.Context) ([]ocsp.Issuer, error) {
	return []ocsp.Issuer{s.issuer}, nil
}

func (s *streamSource) CertificateStatus(context.Context, string, *big.Int) (*store.Certificate, error) {
	return nil, store.ErrNotFound
}

func (s *streamSource) Revocations(ctx context.Context, id string, fn func(store.Revocation) error) error {
	if id != s.issuer.ID {
		return nil
	}
	rng := mrand.NewChaCha8([32]byte{'c', 'r', 'l'})
	var b [20]byte
	for i := range s.n {
		rng.Read(b[:])
		b[0] &= 0x7f
		if b[0] == 0 {
			b[0] = 1
		}
		// The store parses each row's serial into a new big.Int too.
		if err := fn(store.Revocation{Serial: new(big.Int).SetBytes(b[:]), RevokedAt: s.at, Reason: i % 2}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *streamSource) NextCRLNumber(context.Context, string) (int64, error) {
	return s.number.Add(1), nil
}

func (s *streamSource) IssueResponderCert(context.Context, string, crypto.PublicKey, time.Time, time.Time) (*x509.Certificate, error) {
	return nil, errors.New("crlbench: no responder certificates")
}
