package est

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// requestLog gathers what the one log line of a request says: the
// operation, the client certificate and the authorization decision, the
// names asked for, and the outcome.
type requestLog struct {
	op, label, method, remote string
	ignoredAuth               string // scheme of an Authorization header, ignored
	who                       *clientAuth
	authMethod, authOutcome   string
	names                     []string
	pendingID                 string
	serial                    string // of the certificate issued or returned
	sentAgain                 bool   // serial was issued for the same request before
	reason                    string // given to the client
	refusal                   string // policy refusal code
	err                       error  // internal error, never sent to the client
}

func (s *Server) logRequest(ctx context.Context, rl *requestLog, resp *response, elapsed time.Duration) {
	level := slog.LevelInfo
	switch {
	case resp.status >= 500:
		level = slog.LevelError
	case (rl.op == opCACerts || rl.op == opCSRAttrs) && resp.status < 400:
		level = slog.LevelDebug
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("operation", rl.op),
		slog.String("http_method", rl.method),
		slog.String("remote_addr", rl.remote),
		slog.Int("status", resp.status),
		slog.String("outcome", outcome(resp.status)),
		slog.Float64("duration_seconds", elapsed.Seconds()),
	)
	if rl.label != "" {
		attrs = append(attrs, slog.String("label", rl.label))
	}
	if rl.who != nil {
		attrs = append(attrs, slog.Any("client_cert", rl.who))
	}
	if rl.authMethod != "" {
		attrs = append(attrs, slog.String("auth_method", rl.authMethod), slog.String("auth_outcome", rl.authOutcome))
	}
	if len(rl.names) > 0 {
		attrs = append(attrs, slog.Any("names", rl.names))
	}
	if rl.pendingID != "" {
		attrs = append(attrs, slog.String("pending_id", rl.pendingID))
	}
	if rl.serial != "" {
		attrs = append(attrs, slog.String("serial", rl.serial))
	}
	if rl.sentAgain {
		attrs = append(attrs, slog.Bool("sent_again", true))
	}
	if rl.reason != "" && resp.status != http.StatusOK {
		attrs = append(attrs, slog.String("reason", rl.reason))
	}
	if rl.refusal != "" {
		attrs = append(attrs, slog.String("refusal", rl.refusal))
	}
	if rl.ignoredAuth != "" {
		attrs = append(attrs, slog.String("authorization_header_ignored", rl.ignoredAuth))
	}
	if rl.err != nil {
		attrs = append(attrs, slog.String("error", rl.err.Error()))
	}
	s.log.LogAttrs(ctx, level, "est request", attrs...)
}
