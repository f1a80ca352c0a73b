package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzLoad: whatever the file holds, Load returns a configuration or
// errors that name the file, and never panics; a configuration it
// accepts passes validation again unchanged.
func FuzzLoad(f *testing.F) {
	f.Add(Example)
	for _, s := range []string{
		"", "domain: [", "listen:\n  est: :0\n", "est:\n  trusted_client_roots: 5\n", "ca: &a [*a]\n",
		"domain: a\n---\ndomain: b\n", "dns_sd:\n  advertise:\n    - {pri: -1, api_selector: x}\n",
		"log:\n  level: loud\n", "ca:\n  leaf_lifetime: 90d\n  backdate: -5m\n", "hostname: \"\\u0000\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Fatal("a configuration returned with an error")
			}
			var one *Error
			var many Errors
			if !errors.As(err, &one) && !errors.As(err, &many) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml") {
					t.Fatalf("error without the file's name: %q", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v", err)
		}
	})
}
