package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a configuration error that names the key and, when known, the
// line of the file it came from.
type Error struct {
	Source string
	Line   int
	Key    string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of configuration errors, reported together.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// LoadFile reads, decodes, defaults and validates the file at path.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Load(data, path)
	if err != nil {
		return nil, err
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// resolvePaths makes the relative file paths of a configuration file
// (data_dir, manufacturer roots and CRL files, key-encryption key files,
// imported CA files) relative to the directory that holds the file, so
// that every command using the file finds the same data whatever its
// working directory.
func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !isURL(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.DataDir)
	for _, list := range [][]string{c.EST.TrustedClientRoots, c.EST.ClientCRLs, c.EST.ServerKeyGenKEKFiles} {
		for i := range list {
			abs(&list[i])
		}
	}
	for _, imp := range []*Import{c.CA.ECDSA.Import, c.CA.RSA.Import} {
		if imp != nil {
			abs(&imp.RootCert)
			abs(&imp.RootKey)
			abs(&imp.IntermediateCert)
			abs(&imp.IntermediateKey)
		}
	}
}

// Load decodes data strictly (unknown keys and wrong types are errors),
// applies defaults and validates the result. source names the origin in
// error messages.
func Load(data []byte, source string) (*Config, error) {
	c, err := Decode(data, source)
	if err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode parses data into a Config without defaults or validation.
func Decode(data []byte, source string) (*Config, error) {
	c := &Config{Source: source, lines: map[string]int{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, &Error{Source: source, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Source: source, Line: extra.Line, Msg: "only one YAML document is allowed"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{Source: source, Msg: "empty document"}
	}
	d := decoder{source: source, lines: c.lines}
	d.decode(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return c, nil
}

type decoder struct {
	source string
	lines  map[string]int
	errs   Errors
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{Source: d.source, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeOf(Duration(0))

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "null"
	}
	return fmt.Sprintf("%q", n.Value)
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) {
	if key != "" {
		d.lines[key] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		d.fail(n, key, "YAML aliases are not supported")
		return
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(n, key, "want a duration such as 30s, 2160h or 90d, got %s", kindName(n))
			return
		}
		dur, err := ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.fail(n, key, "want a duration such as 30s, 2160h or 90d, got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), key)
		v.Set(p)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return
			}
			d.fail(n, key, "want a mapping, got %s", kindName(n))
			return
		}
		fields := map[string]int{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("yaml")
			if tag != "" && tag != "-" {
				fields[tag] = i
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			sub := kn.Value
			if key != "" {
				sub = key + "." + kn.Value
			}
			if seen[kn.Value] {
				d.fail(kn, sub, "key set twice")
				continue
			}
			seen[kn.Value] = true
			idx, ok := fields[kn.Value]
			if !ok {
				d.fail(kn, sub, "unknown key%s", suggest(kn.Value, fields))
				continue
			}
			d.decode(vn, v.Field(idx), sub)
		}
	case reflect.Slice:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", key, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(n, key, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, key, "want true or false, got %s", kindName(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n, key, "want true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, key, "want a whole number, got %s", kindName(n))
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || i > math.MaxInt32 || i < math.MinInt32 {
			d.fail(n, key, "number %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	default:
		d.fail(n, key, "unsupported type %s", v.Type())
	}
}

// suggest returns ` (did you mean "x"?)` for a near miss among known keys.
func suggest(got string, known map[string]int) string {
	best, bestDist := "", 3
	for k := range known {
		if dist := editDistance(got, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// errorf builds an Error for key, looking up its line.
func (c *Config) errorf(key, format string, args ...any) *Error {
	return &Error{Source: c.Source, Line: c.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// AsErrors returns the individual errors inside err, if it is a
// configuration error.
func AsErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return nil
}
