// Command nmosdns runs the appliance's DNS server (appliance/dns, with the
// nmoscerts plugin) for benchmarks, or writes the same records as a zone file
// for stock CoreDNS's file plugin.
//
//	nmosdns -listen 127.0.0.1:15353
//	nmosdns -write-zone zone.db
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/dns"
	"github.com/nmos-certs/nmos-certs/plugins/nmoscerts"
)

// options is the benchmark's configuration: a facility with two EST
// advertisements and the NMOS registry, query and authorization APIs.
func options(listen string) dns.Options {
	return dns.Options{
		Zone:      "studio.example.test",
		Hostname:  "est.studio.example.test",
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		Listen:    listen,
		TTL:       60 * time.Second,
		Services: []dns.Service{
			{Type: "_nmos-certs._tcp", Instance: "nmos-certs 1", Port: 8443, Pri: 10},
			{Type: "_nmos-certs._tcp", Instance: "nmos-certs 2", Port: 8443, Pri: 20, APISelector: "lab"},
			{Type: "_nmos-register._tcp", Instance: "registry", Target: "registry.studio.example.test",
				TargetAddresses: []netip.Addr{netip.MustParseAddr("192.0.2.20")}, Port: 443, Pri: 10,
				TXT: []string{"api_proto=https", "api_ver=v1.3", "api_auth=true"}},
			{Type: "_nmos-query._tcp", Instance: "query", Target: "registry.studio.example.test", Port: 443, Pri: 10,
				TXT: []string{"api_proto=https", "api_ver=v1.3", "api_auth=true"}},
			{Type: "_nmos-auth._tcp", Instance: "auth", Target: "auth.example.net", Port: 443, Pri: 10,
				TXT: []string{"api_proto=https", "api_ver=v1.0"}},
		},
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:15353", "address to serve on, UDP and TCP")
	writeZone := flag.String("write-zone", "", "write the records as a zone file to this path and exit")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the serving time to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nmosdns:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if *writeZone != "" {
		err = zoneFile(*writeZone)
	} else {
		err = serve(*listen)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "nmosdns:", err)
		os.Exit(1)
	}
}

func serve(listen string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := dns.Start(options(listen), logger)
	if err != nil {
		return err
	}
	fmt.Printf("nmoscerts serving on %s\n", s.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return s.Stop()
}

// zoneFile writes the records the plugin serves for options, in zone file format.
func zoneFile(path string) error {
	o := options("")
	cfg := nmoscerts.Config{Zone: o.Zone, Hostname: o.Hostname, Addresses: o.Addresses, TTL: uint32(o.TTL / time.Second)}
	for _, s := range o.Services {
		cfg.Services = append(cfg.Services, nmoscerts.Service{
			Type: s.Type, Instance: s.Instance, Target: s.Target, TargetAddresses: s.TargetAddresses,
			Port: s.Port, Priority: s.Pri, Weight: s.Weight, APISelector: s.APISelector, TXT: s.TXT,
		})
	}
	n, err := nmoscerts.New(cfg)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n", n.Zone())
	for _, rr := range n.Records() {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
