// Command stockcoredns serves a zone file with stock CoreDNS's file plugin,
// embedded the same way appliance/dns embeds CoreDNS, as the reference the
// nmoscerts plugin is benchmarked against. The plugin chain is the
// appliance's with file in place of nmoscerts: bind, metrics, errors, file
// (-bare leaves out metrics and errors).
//
//	stockcoredns -listen 127.0.0.1:15354 -zone studio.example.test -zonefile zone.db
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"

	// The appliance's metrics directive, so that both chains record the same metrics.
	_ "github.com/nmos-certs/nmos-certs/appliance/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15354", "address to serve on, UDP and TCP")
	zone := flag.String("zone", "studio.example.test.", "zone of the zone file")
	zonefile := flag.String("zonefile", "zone.db", "zone file to serve")
	bare := flag.Bool("bare", false, "run file alone, without the metrics and errors directives")
	flag.Parse()
	if err := run(*listen, *zone, *zonefile, *bare); err != nil {
		fmt.Fprintln(os.Stderr, "stockcoredns:", err)
		os.Exit(1)
	}
}

func run(listen, zone, zonefile string, bare bool) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(zonefile)
	if err != nil {
		return err
	}
	if err := dnsserver.SetDirectives([]string{"bind", "metrics", "errors", "file"}); err != nil {
		return err
	}
	if err := dnsserver.Register(); err != nil {
		return err
	}
	caddy.Quiet, dnsserver.Quiet = true, true
	chain := "\tmetrics\n\terrors\n"
	if bare {
		chain = ""
	}
	corefile := fmt.Sprintf(".:%s {\n\tbind %s\n%s\tfile %q %s {\n\t\treload 0\n\t}\n}\n", port, host, chain, abs, zone)
	inst, err := caddy.Start(caddy.CaddyfileInput{Filepath: "Corefile", Contents: []byte(corefile), ServerTypeName: "dns"})
	if err != nil {
		return err
	}
	fmt.Printf("stock CoreDNS file plugin serving %s on %s\n", zone, listen)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	err = errors.Join(errors.Join(inst.ShutdownCallbacks()...), inst.Stop())
	inst.Wait()
	return err
}
