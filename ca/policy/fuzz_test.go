package policy

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
)

// FuzzSubject: whatever bytes a device sends as its subject, reading,
// comparing, printing and rewriting it do not panic; a rewritten subject
// is a DER Name whose common name is the one given and whose other
// attributes are the original's bytes.
func FuzzSubject(f *testing.F) {
	for _, n := range []pkix.Name{
		{CommonName: "cam1.studio.example.test", Organization: []string{"Acme"}},
		{CommonName: "NODE8.Studio.Example.Test.", Country: []string{"GB"}, SerialNumber: "SN1"},
		{},
	} {
		der, _ := asn1.Marshal(n.ToRDNSequence())
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x03, 0x31, 0x01, 0x30})
	f.Add([]byte{0x30, 0x0a, 0x31, 0x08, 0x30, 0x06, 0x06, 0x03, 0x55, 0x04, 0x03, 0x1c, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		_ = SubjectString(raw)
		_ = SameSubject(raw, raw)
		cns, err := commonNames(raw)
		if err != nil {
			return
		}
		out, err := replaceCommonName(raw, "host.studio.example.test")
		if err != nil {
			return
		}
		got, err := commonNames(out)
		if err != nil || len(got) != len(cns) {
			t.Fatalf("rewritten subject %x: %v, %d common names, had %d", out, err, len(got), len(cns))
		}
		for _, cn := range got {
			if cn != "host.studio.example.test" {
				t.Fatalf("rewritten common name %q", cn)
			}
		}
		if len(cns) == 0 && !bytes.Equal(out, raw) {
			// Without a common name nothing changes but, at most, the
			// DER's own length encoding.
			a, _, _ := parseSubject(raw)
			b, _, _ := parseSubject(out)
			if len(a) != len(b) {
				t.Fatalf("attributes changed: %x -> %x", raw, out)
			}
		}
	})
}
