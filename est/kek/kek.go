// Package kek reads the symmetric key-encryption keys that the EST server
// shares out of band with clients, for server-generated keys returned
// encrypted under a DecryptKeyIdentifier (RFC 7030 4.4.1.1).
//
// Each key lives in a file of its own, a small YAML mapping:
//
//	# studio KEK, generation 1
//	id: studio-kek-1
//	key: 5f0c8e...   # hex of 16, 24 or 32 bytes (AES-128, -192, -256)
//
// The identifier is the value of the DecryptKeyIdentifier attribute a
// client puts in its CSR. It is given either as text with id (its bytes
// are the UTF-8 of the text) or as hex with id_hex, never both. The file
// must not be readable or writable by group or others (mode 0600 or
// stricter).
//
// Key material never leaves this package in a printable form: a Key
// formats, and logs, as its identifier and file only.
package kek

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxIDLen bounds identifiers, which are sent in CSRs and logged.
const MaxIDLen = 256

// Key is one key-encryption key and the identifier clients name it by.
type Key struct {
	id     []byte
	secret []byte
	path   string
}

// New returns a Key for an identifier and an AES key of 16, 24 or 32
// bytes. path is only used to describe the key (it may be empty).
func New(id, secret []byte, path string) (*Key, error) {
	if len(id) == 0 || len(id) > MaxIDLen {
		return nil, fmt.Errorf("the identifier must be 1 to %d bytes, got %d", MaxIDLen, len(id))
	}
	switch len(secret) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("the key must be 16, 24 or 32 bytes (AES-128, AES-192 or AES-256), got %d", len(secret))
	}
	return &Key{id: bytes.Clone(id), secret: bytes.Clone(secret), path: path}, nil
}

// ID returns the identifier (a copy).
func (k *Key) ID() []byte { return bytes.Clone(k.id) }

// Secret returns the key itself. Callers must not keep, log or change it.
func (k *Key) Secret() []byte { return k.secret }

// Path is the file the key was read from ("" when it was not).
func (k *Key) Path() string { return k.path }

// String describes the key without its secret.
func (k *Key) String() string {
	if k == nil {
		return "<nil>"
	}
	s := "key-encryption key " + DescribeID(k.id)
	if k.path != "" {
		s += " from " + k.path
	}
	return s
}

// GoString is String: %#v must not print the secret either.
func (k *Key) GoString() string { return k.String() }

// Format keeps every verb (%v, %+v, %x, %s ...) to the description.
func (k *Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue logs the identifier and file, never the secret.
func (k *Key) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("id", DescribeID(k.id)), slog.String("file", k.path))
}

// DescribeID renders an identifier for people: quoted text with its hex
// when it is printable ASCII, hex alone otherwise, e.g. "studio-kek-1"
// (hex 73747564696f2d6b656b2d31) or 0a1b2c.
func DescribeID(id []byte) string {
	h := hex.EncodeToString(id)
	if len(id) == 0 {
		return "(empty)"
	}
	for _, c := range id {
		if c < 0x20 || c > 0x7e {
			return h
		}
	}
	return fmt.Sprintf("%q (hex %s)", id, h)
}

// FileError names a key file that cannot be used and, when known, the
// line of the problem.
type FileError struct {
	Path string
	Line int
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("key file %s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("key file %s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ReadFile reads one key file. It refuses a file that group or others
// may read or write.
func ReadFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &FileError{Path: path, Err: errors.New("missing")}
		}
		return nil, &FileError{Path: path, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return nil, &FileError{Path: path, Err: errors.New("not a regular file")}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &FileError{Path: path, Err: fmt.Errorf("mode %04o is too open: key-encryption key files must be 0600 or stricter", perm)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	defer clear(data)
	return Parse(data, path)
}

// Parse decodes the contents of a key file; path names it in errors.
// Errors never quote the file's values.
func Parse(data []byte, path string) (*Key, error) {
	fail := func(line int, format string, args ...any) error {
		return &FileError{Path: path, Line: line, Err: fmt.Errorf(format, args...)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		// The YAML parser's message may quote the file: keep only that
		// it is not YAML.
		return nil, fail(0, "not a YAML mapping of id (or id_hex) and key")
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fail(extra.Line, "only one YAML document is allowed")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fail(0, "not a YAML mapping of id (or id_hex) and key")
	}
	m := doc.Content[0]
	var id, secret []byte
	var idLine, keyLine int
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], m.Content[i+1]
		name := kn.Value
		if kn.Kind != yaml.ScalarNode {
			return nil, fail(kn.Line, "unexpected key: want id, id_hex and key")
		}
		if seen[name] {
			return nil, fail(kn.Line, "%s set twice", name)
		}
		seen[name] = true
		if vn.Kind != yaml.ScalarNode || vn.Tag == "!!null" || vn.Value == "" {
			return nil, fail(vn.Line, "%s: want a value", name)
		}
		switch name {
		case "id":
			id, idLine = []byte(vn.Value), vn.Line
		case "id_hex":
			b, err := decodeHex(vn.Value)
			if err != nil {
				return nil, fail(vn.Line, "id_hex: %v", err)
			}
			id, idLine = b, vn.Line
		case "key":
			b, err := decodeHex(vn.Value)
			if err != nil {
				return nil, fail(vn.Line, "key: %v", err)
			}
			secret, keyLine = b, vn.Line
		default:
			return nil, fail(kn.Line, "unknown key %q: want id (or id_hex) and key", name)
		}
	}
	defer clear(secret)
	switch {
	case seen["id"] && seen["id_hex"]:
		return nil, fail(idLine, "give the identifier once, as id (text) or id_hex, not both")
	case id == nil:
		return nil, fail(0, "no identifier: add id (text) or id_hex")
	case len(id) > MaxIDLen:
		return nil, fail(idLine, "the identifier is %d bytes, more than %d", len(id), MaxIDLen)
	case secret == nil:
		return nil, fail(0, "no key: add key, the hex of 16, 24 or 32 random bytes")
	}
	k, err := New(id, secret, path)
	if err != nil {
		return nil, fail(keyLine, "%v", err)
	}
	return k, nil
}

// decodeHex decodes hex digits, allowing spaces and colons between
// bytes for readability. The error does not quote the input.
func decodeHex(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == ':' || r == '\t' {
			return -1
		}
		return r
	}, s)
	clean = strings.TrimPrefix(strings.TrimPrefix(clean, "0x"), "0X")
	if len(clean)%2 != 0 {
		return nil, errors.New("want hex digits, an even number of them")
	}
	b, err := hex.DecodeString(clean)
	if err != nil {
		return nil, errors.New("want hex digits (0-9, a-f)")
	}
	return b, nil
}

// Set is the keys a server knows, by identifier. The zero Set and a nil
// *Set hold no keys.
type Set struct {
	byID map[string]*Key
	keys []*Key
}

// NewSet builds a Set, refusing two keys with the same identifier.
func NewSet(keys ...*Key) (*Set, error) {
	s := &Set{byID: map[string]*Key{}}
	for _, k := range keys {
		if k == nil {
			continue
		}
		if other, dup := s.byID[string(k.id)]; dup {
			return nil, fmt.Errorf("%s has the identifier of %s: identifiers must be unique", k, other)
		}
		s.byID[string(k.id)] = k
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// Load reads every file of paths into a Set.
func Load(paths []string) (*Set, error) {
	keys := make([]*Key, 0, len(paths))
	for _, p := range paths {
		k, err := ReadFile(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return NewSet(keys...)
}

// Lookup returns the key with this identifier.
func (s *Set) Lookup(id []byte) (*Key, bool) {
	if s == nil {
		return nil, false
	}
	k, ok := s.byID[string(id)]
	return k, ok
}

// Len is the number of keys.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Keys lists the keys in the order they were given.
func (s *Set) Keys() []*Key {
	if s == nil {
		return nil
	}
	return append([]*Key(nil), s.keys...)
}
