package est

import (
	"errors"
	"fmt"
	"net/http"
)

// httpError is an error that carries the HTTP status the client gets and
// a reason a person can act on. It is the only error type the handlers
// turn into a response body; anything else is a 500 whose detail stays in
// the log.
type httpError struct {
	status int
	msg    string
	// retryAfter, when set, becomes a Retry-After header (seconds).
	retryAfter int
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *httpError {
	return errorf(http.StatusBadRequest, format, args...)
}

func forbidden(format string, args ...any) *httpError {
	return errorf(http.StatusForbidden, format, args...)
}

// asHTTPError returns the httpError inside err, if any.
func asHTTPError(err error) (*httpError, bool) {
	var he *httpError
	if errors.As(err, &he) {
		return he, true
	}
	return nil, false
}

// outcome is the metric label for a response status.
func outcome(status int) string {
	switch {
	case status == http.StatusOK || status == http.StatusNoContent:
		return "ok"
	case status == http.StatusAccepted:
		return "pending"
	case status == http.StatusBadRequest:
		return "bad_request"
	case status == http.StatusUnauthorized:
		return "unauthorized"
	case status == http.StatusForbidden:
		return "forbidden"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusRequestEntityTooLarge:
		return "too_large"
	case status == http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case status == http.StatusNotImplemented:
		return "not_implemented"
	case status == http.StatusServiceUnavailable:
		return "unavailable"
	case status >= 500:
		return "error"
	}
	return "other"
}
