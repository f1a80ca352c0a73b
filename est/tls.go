package est

import (
	"crypto/tls"
	"errors"
	"slices"
)

// cipherSuites are the TLS 1.2 suites offered (BCP-003-01): ECDHE only,
// ECDSA before RSA, AEAD (GCM, then ChaCha20-Poly1305) before CBC. The
// CBC suites are the SHA-1 HMAC ones Go implements in constant time; the
// CBC-SHA256 suites Go marks insecure (Lucky13) are left out. TLS 1.3
// suites are not configurable in Go and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// CipherSuites returns the TLS 1.2 cipher suites TLSConfig offers, in
// BCP-003-01 order, for other listeners of the appliance.
func CipherSuites() []uint16 { return slices.Clone(cipherSuites) }

// errNoServerCertificate is returned to a handshake when the appliance has
// no certificate to present yet.
var errNoServerCertificate = errors.New("est: no server certificate is loaded")

// TLSConfig returns the TLS configuration of the EST listener.
//
// certs returns the server's current certificates (normally one ECDSA and
// one RSA); it is called on every handshake, so a renewed or rolled-over
// certificate is used without restarting the listener. The certificate
// presented is the first one the ClientHello supports, else the first.
//
// Client certificates are requested, not required, and not verified by
// the TLS layer: the Server verifies them against the manufacturer roots
// and its own CA, so that a device without a certificate can still fetch
// /cacerts or have a request approved by an operator.
func TLSConfig(certs func() []*tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     CipherSuites(),
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384},
		ClientAuth:       tls.RequestClientCert,
		// No TLS 1.3 session tickets and no TLS 1.2 resumption: every EST
		// connection authenticates the device afresh. A device enrolls or
		// renews once in weeks, long after any ticket's lifetime, so a
		// ticket would only cost a sealed copy of the device's chain and a
		// record per connection.
		SessionTicketsDisabled: true,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pickCertificate(hello, certs())
		},
	}
}

// pickCertificate returns the first certificate the client supports,
// falling back to the first one (the handshake then fails or succeeds on
// the client's terms).
func pickCertificate(hello *tls.ClientHelloInfo, list []*tls.Certificate) (*tls.Certificate, error) {
	var first *tls.Certificate
	for _, c := range list {
		if c == nil {
			continue
		}
		if first == nil {
			first = c
		}
		if hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	if first == nil {
		return nil, errNoServerCertificate
	}
	return first, nil
}
