package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"

	"github.com/nmos-certs/nmos-certs/est/kek"
)

// Example is the fully commented example configuration printed by
// 'nmos-certs config example'.
//
//go:embed example.yaml
var Example []byte

// CheckFiles checks that the files the configuration names exist and are
// readable, and that key-encryption key files are private and well
// formed. Unlike Validate it touches the file system; it changes nothing.
func (c *Config) CheckFiles() error {
	var errs Errors
	check := func(key, path string) {
		if path == "" {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			msg := err.Error()
			if errors.Is(err, os.ErrNotExist) {
				msg = fmt.Sprintf("%s does not exist", path)
			}
			errs = append(errs, c.errorf(key, "%s", msg))
			return
		}
		f.Close()
	}
	for i, p := range c.EST.TrustedClientRoots {
		check(fmt.Sprintf("est.trusted_client_roots[%d]", i), p)
	}
	for i, p := range c.EST.ClientCRLs {
		if !isURL(p) {
			check(fmt.Sprintf("est.client_crls[%d]", i), p)
		}
	}
	// Key-encryption key files are read as the server reads them: their
	// mode, their format and unique identifiers are checked too.
	type kekFile struct {
		key string
		k   *kek.Key
	}
	var keks []kekFile
	for i, p := range c.EST.ServerKeyGenKEKFiles {
		if p == "" {
			continue
		}
		key := fmt.Sprintf("est.serverkeygen_kek_files[%d]", i)
		k, err := kek.ReadFile(p)
		if err != nil {
			errs = append(errs, c.errorf(key, "%v", err))
			continue
		}
		for _, other := range keks {
			if bytes.Equal(other.k.ID(), k.ID()) {
				errs = append(errs, c.errorf(key, "%s has the same identifier as %s (%s): identifiers must be unique", p, other.k.Path(), other.key))
			}
		}
		keks = append(keks, kekFile{key, k})
	}
	for _, h := range []struct {
		key string
		imp *Import
	}{{"ca.ecdsa.import", c.CA.ECDSA.Import}, {"ca.rsa.import", c.CA.RSA.Import}} {
		if h.imp == nil {
			continue
		}
		check(h.key+".root_cert", h.imp.RootCert)
		check(h.key+".root_key", h.imp.RootKey)
		check(h.key+".intermediate_cert", h.imp.IntermediateCert)
		check(h.key+".intermediate_key", h.imp.IntermediateKey)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func isURL(s string) bool {
	return len(s) > 7 && (s[:7] == "http://" || (len(s) > 8 && s[:8] == "https://"))
}
