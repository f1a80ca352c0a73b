// Command fptool measures the appliance's footprint for
// bench/footprint/run.sh:
//
//	fptool binary FILE
//	    size of a binary, whether it is static and stripped, how it was built
//	fptool start -bin FILE -config FILE [-stop] -out FILE [listener addresses]
//	    start "nmos-certs serve" and poll every listener until each answers
//
// start runs the server as its child and measures from just before the
// exec. Every -interval it probes each listener the configuration has:
// EST and the UI with a TLS handshake, HTTP with GET /ca/ecdsa-root-1.pem,
// metrics with GET /metrics, DNS with an SOA query for the zone over UDP
// and over TCP. It writes to -out, as JSON, when each first answered and
// when all had. With -stop it then stops the server (SIGTERM) and adds how
// long that took; without, it keeps the server running until it gets
// SIGTERM or SIGINT itself, and then stops it the same way.
package main

import (
	"context"
	"crypto/tls"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fptool binary FILE | fptool start [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "binary":
		err = binary(os.Args[2:])
	case "start":
		err = start(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fptool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// Binary describes an executable.
type Binary struct {
	Bytes     int64  `json:"bytes"`
	Static    bool   `json:"static"`
	Stripped  bool   `json:"stripped"`
	GoVersion string `json:"go_version"`
	CGO       string `json:"cgo_enabled"`
	Trimpath  bool   `json:"trimpath"`
	LDFlags   string `json:"ldflags,omitempty"`
}

func binary(args []string) error {
	if len(args) != 1 {
		return errors.New("want one file")
	}
	fi, err := os.Stat(args[0])
	if err != nil {
		return err
	}
	b := Binary{Bytes: fi.Size()}
	f, err := elf.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	// Static: no program interpreter and no shared libraries needed.
	interp := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp = true
		}
	}
	libs, _ := f.ImportedLibraries()
	b.Static = !interp && len(libs) == 0
	b.Stripped = f.Section(".symtab") == nil
	if bi, err := buildinfo.ReadFile(args[0]); err == nil {
		b.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "CGO_ENABLED":
				b.CGO = s.Value
			case "-trimpath":
				b.Trimpath = s.Value == "true"
			case "-ldflags":
				b.LDFlags = s.Value
			}
		}
	}
	return writeJSON(os.Stdout, b)
}

// Start is what start writes.
type Start struct {
	PID int `json:"pid"`
	// Exec is when the server was started, to set its log against.
	Exec time.Time `json:"exec"`
	// ReadyMS is when each listener first answered, in milliseconds
	// after the exec; AllMS is the last of them.
	ReadyMS map[string]float64 `json:"ready_ms"`
	AllMS   float64            `json:"all_ms"`
	// StopMS is how long the server took to exit after SIGTERM (-stop).
	StopMS float64 `json:"stop_ms,omitempty"`
}

func start(args []string) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	bin := fs.String("bin", "", "the nmos-certs binary")
	config := fs.String("config", "", "its configuration file")
	logFile := fs.String("log", "", "append the server's output to this file (default: discard)")
	out := fs.String("out", "", "write the result here (JSON) once every listener answered")
	stop := fs.Bool("stop", false, "stop the server once every listener answered")
	interval := fs.Duration("interval", 5*time.Millisecond, "time between probes of a listener")
	timeout := fs.Duration("timeout", 60*time.Second, "give up when not ready after this long")
	estAddr := fs.String("est", "", "EST listener (TLS)")
	httpAddr := fs.String("http", "", "plain HTTP listener")
	dnsAddr := fs.String("dns", "", "DNS listener (UDP and TCP)")
	metricsAddr := fs.String("metrics", "", "metrics listener")
	webAddr := fs.String("web", "", "operator UI listener (TLS)")
	zone := fs.String("zone", "studio.example.test", "DNS zone the server is authoritative for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *config == "" || *out == "" {
		return errors.New("need -bin, -config and -out")
	}
	probes := map[string]func() error{}
	if *estAddr != "" {
		probes["est"] = func() error { return tlsProbe(*estAddr) }
	}
	if *webAddr != "" {
		probes["web"] = func() error { return tlsProbe(*webAddr) }
	}
	if *httpAddr != "" {
		probes["http"] = func() error { return httpProbe("http://" + *httpAddr + "/ca/ecdsa-root-1.pem") }
	}
	if *metricsAddr != "" {
		probes["metrics"] = func() error { return httpProbe("http://" + *metricsAddr + "/metrics") }
	}
	if *dnsAddr != "" {
		probes["dns_udp"] = func() error { return dnsProbe("udp", *dnsAddr, *zone) }
		probes["dns_tcp"] = func() error { return dnsProbe("tcp", *dnsAddr, *zone) }
	}
	if len(probes) == 0 {
		return errors.New("no listener to probe")
	}

	// A listener answering already is another process's: the figures
	// would be its.
	for name, probe := range probes {
		if probe() == nil {
			return fmt.Errorf("something answers on the %s address already", name)
		}
	}

	var output io.Writer = io.Discard
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		output = f
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	cmd := exec.Command(*bin, "serve", "--config", *config)
	cmd.Stdout, cmd.Stderr = output, output
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res := Start{PID: cmd.Process.Pid, Exec: t0.UTC(), ReadyMS: map[string]float64{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, probe := range probes {
		wg.Go(func() {
			for ctx.Err() == nil {
				if probe() == nil {
					at := msSince(t0)
					mu.Lock()
					res.ReadyMS[name] = at
					mu.Unlock()
					return
				}
				time.Sleep(*interval)
			}
		})
	}
	ready := make(chan struct{})
	go func() { wg.Wait(); close(ready) }()
	select {
	case <-ready:
	case err := <-exited:
		cancel()
		return fmt.Errorf("the server exited before it was ready: %v", err)
	case <-sigs:
		cancel()
		return stopServer(cmd, exited, nil)
	}
	if len(res.ReadyMS) != len(probes) {
		stopServer(cmd, exited, nil)
		var missing []string
		for name := range probes {
			if _, ok := res.ReadyMS[name]; !ok {
				missing = append(missing, name)
			}
		}
		return fmt.Errorf("not ready after %s: %s", *timeout, strings.Join(missing, ", "))
	}
	for _, ms := range res.ReadyMS {
		res.AllMS = max(res.AllMS, ms)
	}
	if *stop {
		var took time.Duration
		if err := stopServer(cmd, exited, &took); err != nil {
			return err
		}
		res.StopMS = float64(took.Microseconds()) / 1000
	}
	if err := writeFileJSON(*out, res); err != nil {
		stopServer(cmd, exited, nil)
		return err
	}
	if *stop {
		return nil
	}
	select {
	case <-sigs:
		return stopServer(cmd, exited, nil)
	case err := <-exited:
		return fmt.Errorf("the server exited: %v", err)
	}
}

// stopServer sends SIGTERM and waits for the exit (SIGKILL after 10 s).
func stopServer(cmd *exec.Cmd, exited <-chan error, took *time.Duration) error {
	t := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-exited:
		if took != nil {
			*took = time.Since(t)
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("the server exited with %v", err)
		}
		return err
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
		return errors.New("the server did not stop within 10 s of SIGTERM")
	}
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func tlsProbe(addr string) error {
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only whether it serves TLS
	if err != nil {
		return err
	}
	return c.Close()
}

var probeClient = &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}

func httpProbe(url string) error {
	resp, err := probeClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func dnsProbe(network, addr, zone string) error {
	c := &dns.Client{Net: network, Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return fmt.Errorf("SOA %s: %s, %d answers", zone, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeFileJSON writes v to path whole: a reader polling for path never
// sees half of it.
func writeFileJSON(path string, v any) error {
	f, err := os.CreateTemp(dirOf(path), ".fptool-*")
	if err != nil {
		return err
	}
	if err := writeJSON(f, v); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}
