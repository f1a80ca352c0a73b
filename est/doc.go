// Package est is the appliance's Enrollment over Secure Transport server
// (RFC 7030, clarified by RFC 8951) with the client authentication that
// AMWA BCP-003-03 asks for.
//
// The package knows nothing of how certificates are signed or stored: it
// declares the small interfaces it needs (CA, Approvals) and the authority
// implements them. It serves:
//
//	GET  /.well-known/est[/<label>]/cacerts         CA certificates (certs-only PKCS#7)
//	GET  /.well-known/est[/<label>]/csrattrs        the attributes we want in CSRs
//	POST /.well-known/est[/<label>]/simpleenroll    enrollment
//	POST /.well-known/est[/<label>]/simplereenroll  renewal with the certificate being renewed
//	POST /.well-known/est[/<label>]/serverkeygen    enrollment with a key made by the server
//	*    /.well-known/est[/<label>]/fullcmc         501 Not Implemented
//
// Clients authenticate with a TLS client certificate only: a manufacturer
// certificate (verified against the roots of a Trust, with revocation from
// the manufacturers' CRLs) or a certificate this CA issued. HTTP Basic
// authentication is never accepted nor offered. Without a trusted
// certificate a request may wait for an operator (manual approval: 202 and
// Retry-After) when the server is configured for it.
//
// TLSConfig builds the listener's TLS configuration (BCP-003-01): the
// client certificate is requested during the handshake but verified here,
// so that a device without one can still fetch /cacerts or queue a request
// for approval.
package est
