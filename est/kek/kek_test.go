package kek

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func write(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		id         []byte
		size       int
	}{
		{"text id", "# a comment\nid: studio-kek-1\nkey: " + secretHex + "\n", []byte("studio-kek-1"), 32},
		{"quoted id", "id: \"studio kek 1\"\nkey: \"" + secretHex[:32] + "\"\n", []byte("studio kek 1"), 16},
		{"hex id", "id_hex: 0A1B2C\nkey: " + secretHex[:48] + "\n", []byte{0x0a, 0x1b, 0x2c}, 24},
		{"separators", "key: 00:01:02:03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\nid: 1234\n", []byte("1234"), 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ReadFile(write(t, dir, "k.yaml", tc.body, 0o600))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.ID(), tc.id) || len(k.Secret()) != tc.size {
				t.Fatalf("id %x, %d-byte key", k.ID(), len(k.Secret()))
			}
			want, _ := hex.DecodeString(secretHex[:2*tc.size])
			if !bytes.Equal(k.Secret(), want) {
				t.Fatal("key differs")
			}
		})
	}
	// 0400 is stricter than 0600: fine.
	if _, err := ReadFile(write(t, dir, "ro.yaml", "id: a\nkey: "+secretHex+"\n", 0o400)); err != nil {
		t.Fatal(err)
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := "id: a\nkey: " + secretHex + "\n"
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       []string
	}{
		{"group readable", good, 0o640, []string{"mode 0640 is too open", "0600 or stricter"}},
		{"world readable", good, 0o604, []string{"mode 0604 is too open"}},
		{"group writable", good, 0o620, []string{"mode 0620 is too open"}},
		{"short key", "id: a\nkey: 0011\n", 0o600, []string{":2:", "16, 24 or 32 bytes", "got 2"}},
		{"odd hex", "id: a\nkey: 001\n", 0o600, []string{":2:", "even number"}},
		{"not hex", "id: a\nkey: zz" + secretHex[2:] + "\n", 0o600, []string{":2:", "hex digits"}},
		{"no key", "id: a\n", 0o600, []string{"no key"}},
		{"no id", "key: " + secretHex + "\n", 0o600, []string{"no identifier"}},
		{"both ids", "id: a\nid_hex: 61\nkey: " + secretHex + "\n", 0o600, []string{"not both"}},
		{"unknown key", "id: a\nkye: " + secretHex + "\n", 0o600, []string{":2:", `unknown key "kye"`}},
		{"twice", "id: a\nid: b\nkey: " + secretHex + "\n", 0o600, []string{":2:", "id set twice"}},
		{"empty id", "id: \"\"\nkey: " + secretHex + "\n", 0o600, []string{":1:", "want a value"}},
		{"null", "id:\nkey: " + secretHex + "\n", 0o600, []string{"id: want a value"}},
		{"list", "- a\n", 0o600, []string{"not a YAML mapping"}},
		{"not yaml", "id: [\n", 0o600, []string{"not a YAML mapping"}},
		{"two documents", good + "---\n" + good, 0o600, []string{"only one YAML document"}},
		{"long id", "id_hex: " + strings.Repeat("ab", MaxIDLen+1) + "\nkey: " + secretHex + "\n", 0o600, []string{"257 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, dir, "bad.yaml", tc.body, tc.mode)
			_, err := ReadFile(p)
			if err == nil {
				t.Fatal("read without error")
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != p {
				t.Fatalf("error %v does not name the file", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %s", err, p)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Errors never quote the key.
			if strings.Contains(err.Error(), secretHex[4:20]) {
				t.Errorf("error %q shows key material", err)
			}
		})
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
}

func TestLoadAndLookup(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.yaml", "id: a\nkey: "+secretHex+"\n", 0o600)
	b := write(t, dir, "b.yaml", "id_hex: 0102\nkey: "+secretHex[:32]+"\n", 0o600)
	s, err := Load([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 || len(s.Keys()) != 2 {
		t.Fatalf("%d keys", s.Len())
	}
	if k, ok := s.Lookup([]byte("a")); !ok || k.Path() != a {
		t.Fatalf("lookup a: %v %v", k, ok)
	}
	if k, ok := s.Lookup([]byte{1, 2}); !ok || k.Path() != b {
		t.Fatalf("lookup 0102: %v %v", k, ok)
	}
	if _, ok := s.Lookup([]byte("c")); ok {
		t.Fatal("found c")
	}
	var none *Set
	if _, ok := none.Lookup([]byte("a")); ok || none.Len() != 0 || none.Keys() != nil {
		t.Fatal("nil set holds keys")
	}
	// The same identifier twice.
	a2 := write(t, dir, "a2.yaml", "id_hex: 61\nkey: "+secretHex[:32]+"\n", 0o600)
	if _, err := Load([]string{a, a2}); err == nil || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), a2) {
		t.Fatalf("duplicate identifier: %v", err)
	}
	// A bad file fails the whole load.
	bad := write(t, dir, "open.yaml", "id: o\nkey: "+secretHex+"\n", 0o644)
	if _, err := Load([]string{a, bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("open file: %v", err)
	}
}

// TestNoKeyMaterialInOutput formats and logs a key every way there is.
func TestNoKeyMaterialInOutput(t *testing.T) {
	secret, _ := hex.DecodeString(secretHex)
	k, err := New([]byte("studio-kek-1"), secret, "kek.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		fmt.Fprintf(&out, verb+"\n", k)
	}
	fmt.Fprintf(&out, "%v %+v\n", []*Key{k}, struct{ K *Key }{k})
	slog.New(slog.NewJSONHandler(&out, nil)).Info("loaded", "kek", k)
	slog.New(slog.NewTextHandler(&out, nil)).Info("loaded", "kek", k)
	text := out.String()
	for _, leak := range []string{secretHex, strings.ToUpper(secretHex), string(secret[4:12]), "[0 1 2 3"} {
		if strings.Contains(text, leak) {
			t.Fatalf("output shows key material:\n%s", text)
		}
	}
	if !strings.Contains(text, "studio-kek-1") || !strings.Contains(text, "kek.yaml") {
		t.Fatalf("output does not describe the key:\n%s", text)
	}
}

func TestDescribeID(t *testing.T) {
	for id, want := range map[string]string{
		"studio-kek-1":   `"studio-kek-1" (hex 73747564696f2d6b656b2d31)`,
		"\x00\x01\xff":   "0001ff",
		"line\nbreak":    "6c696e650a627265616b",
		"":               "(empty)",
		"caf\xc3\xa9 42": "636166c3a9203432",
		"\xde\xad":       "dead",
		"a b":            `"a b" (hex 612062)`,
	} {
		if got := DescribeID([]byte(id)); got != want {
			t.Errorf("DescribeID(%q) = %s, want %s", id, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := New(nil, make([]byte, 16), ""); err == nil {
		t.Error("empty identifier accepted")
	}
	for _, n := range []int{0, 8, 20, 33, 64} {
		if _, err := New([]byte("a"), make([]byte, n), ""); err == nil {
			t.Errorf("%d-byte key accepted", n)
		}
	}
}
