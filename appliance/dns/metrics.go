package dns

import (
	"context"
	"net"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics/vars"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/rcode"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// metricsDirective records CoreDNS's request metrics (coredns_dns_requests_total,
// coredns_dns_responses_total, the duration and size histograms...) exactly as
// the stock "prometheus" directive does, without its HTTP listener.
//
// The series are CoreDNS's own (package plugin/metrics/vars), registered with
// prometheus.DefaultRegisterer when that package is loaded; the appliance
// serves DefaultGatherer on its single /metrics endpoint. The stock directive
// is not used because it always opens a listener of its own (localhost:9153
// by default) and its package pulls in coremain, which registers command-line
// flags and the server type as import side effects.
const metricsDirective = "metrics"

func init() { plugin.Register(metricsDirective, setupMetrics) }

func setupMetrics(c *caddy.Controller) error {
	c.Next() // the directive
	if c.NextArg() {
		return plugin.Error(metricsDirective, c.ArgErr())
	}
	if c.NextBlock() {
		return plugin.Error(metricsDirective, c.Errf("%s takes no block", metricsDirective))
	}
	m := &metricsRecorder{zones: plugin.OriginsFromArgsOrServerBlock(nil, c.ServerBlockKeys)}
	m.rootOnly = len(m.zones) == 1 && m.zones[0] == "."

	// Which plugins are enabled, as the stock directive reports it.
	conf := dnsserver.GetConfig(c)
	enabled := func() error {
		for _, h := range conf.ListenHosts {
			addr := conf.Transport + "://" + net.JoinHostPort(h, conf.Port)
			for _, p := range conf.Handlers() {
				vars.PluginEnabled.WithLabelValues(addr, conf.Zone, conf.ViewName, p.Name()).Set(1)
			}
		}
		return nil
	}
	c.OnStartup(enabled)
	c.OnRestartFailed(enabled)
	c.OnRestart(func() error { vars.PluginEnabled.Reset(); return nil })

	conf.AddPlugin(func(next plugin.Handler) plugin.Handler {
		m.Next = next
		return m
	})
	return nil
}

// metricsRecorder is the handler of the metrics directive.
type metricsRecorder struct {
	Next     plugin.Handler
	zones    []string
	rootOnly bool // zones is just ".": every query is in zone "."
}

// ServeDNS implements plugin.Handler: it runs the rest of the chain and
// reports the request and the response written.
func (m *metricsRecorder) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	reqSize := r.Len() // before a plugin changes the request

	zone := "."
	if !m.rootOnly {
		if z := plugin.Zones(m.zones).Matches(state.Name()); z != "" {
			zone = z
		}
	}
	rw := &recordingWriter{Recorder: dnstest.NewRecorder(w)}
	status, err := plugin.NextOrFailure(m.Name(), m.Next, ctx, rw, r)

	rc := rw.Rcode
	if !plugin.ClientWrite(status) {
		// Nothing was written: the server writes status as the response code.
		rc = status
	}
	vars.Report(serverAddr(ctx), state, zone, viewName(ctx), rcode.ToString(rc), rw.plugin,
		rw.Len, rw.Start, vars.WithOriginalReqSize(reqSize))
	return status, err
}

// Name implements plugin.Handler.
func (m *metricsRecorder) Name() string { return metricsDirective }

// recordingWriter records the response code, size and writing plugin.
type recordingWriter struct {
	*dnstest.Recorder
	plugin string
}

// Write records the response code of a message written packed.
func (w *recordingWriter) Write(buf []byte) (int, error) {
	if len(buf) >= 4 {
		w.Rcode = int(buf[3] & 0x0f)
	}
	return w.Recorder.Write(buf)
}

// SetPlugin implements plugin.PluginTracker.
func (w *recordingWriter) SetPlugin(name string) { w.plugin = name }

// GetPlugin implements plugin.PluginTracker.
func (w *recordingWriter) GetPlugin() string { return w.plugin }

// serverAddr is the "server" label: the listener's address, e.g. "dns://127.0.0.1:53".
func serverAddr(ctx context.Context) string {
	if s, ok := ctx.Value(dnsserver.Key{}).(*dnsserver.Server); ok {
		return s.Addr
	}
	return ""
}

func viewName(ctx context.Context) string {
	v, _ := ctx.Value(dnsserver.ViewKey{}).(string)
	return v
}
