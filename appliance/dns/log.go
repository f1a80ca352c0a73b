package dns

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"sync/atomic"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

// CoreDNS and caddy log through the standard library's log package, with a
// level prefix ("[INFO] ", "[ERROR] "...) and, for plugins, "plugin/NAME: ".
// stdlogBridge turns each such line into a slog record of the dns component.
var stdlogBridge logBridge

// routeLogs points the standard library's logger at l. The standard logger
// is process-wide: anything else that writes to it is logged as dns too.
func routeLogs(l *slog.Logger) {
	stdlogBridge.logger.Store(l)
	log.SetFlags(0)
	log.SetPrefix("")
	clog.SetOutput(&stdlogBridge)
}

type logBridge struct {
	logger atomic.Pointer[slog.Logger]
}

var levels = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[DEBUG] "), slog.LevelDebug},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[WARNING] "), slog.LevelWarn},
	{[]byte("[ERROR] "), slog.LevelError},
	{[]byte("[FATAL] "), slog.LevelError},
	{[]byte("[PANIC] "), slog.LevelError},
}

// Write implements io.Writer; the log package calls it once per entry.
func (b *logBridge) Write(p []byte) (int, error) {
	l := b.logger.Load()
	if l == nil {
		return len(p), nil
	}
	msg := bytes.TrimRight(p, "\n")
	level := slog.LevelInfo
	for _, lv := range levels {
		if bytes.HasPrefix(msg, lv.prefix) {
			level, msg = lv.level, msg[len(lv.prefix):]
			break
		}
	}
	if !l.Enabled(context.Background(), level) {
		return len(p), nil
	}
	var attrs []slog.Attr
	if rest, ok := bytes.CutPrefix(msg, []byte("plugin/")); ok {
		if name, text, ok := bytes.Cut(rest, []byte(": ")); ok && len(name) > 0 && bytes.IndexByte(name, ' ') < 0 {
			attrs = append(attrs, slog.String("plugin", string(name)))
			msg = text
		}
	}
	l.LogAttrs(context.Background(), level, string(msg), attrs...)
	return len(p), nil
}
