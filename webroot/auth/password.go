// Package auth holds what the operator UI's sign-in rests on: password
// hashes (argon2id), session and CSRF tokens, roles, and the limiter that
// slows and locks out password guessing. The CLI uses it to manage
// accounts; webroot to sign operators in.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's costs. Default costs about 64 MiB and a few tens
// of milliseconds per hash on a server core: dear for a guesser with the
// database, cheap for an operator signing in.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// Default is what new hashes use (RFC 9106's second recommended option,
// with three passes).
var Default = Params{Memory: 64 * 1024, Time: 3, Threads: 2}

const (
	saltLen = 16
	keyLen  = 32
	// MinPassword and MaxPassword bound a password's length in
	// characters; the upper bound keeps a hash request cheap to refuse.
	MinPassword = 12
	MaxPassword = 256
)

// ErrMismatch is a password that does not match its hash.
var ErrMismatch = errors.New("wrong password")

// CheckPassword says why a new password is refused, or nil.
func CheckPassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return errors.New("the password is not valid UTF-8")
	case n < MinPassword:
		return fmt.Errorf("the password must have at least %d characters", MinPassword)
	case n > MaxPassword:
		return fmt.Errorf("the password must have at most %d characters", MaxPassword)
	}
	return nil
}

// Hash returns pw's argon2id hash as a PHC string:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>, base64 without padding.
func Hash(pw string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// parseHash reads a PHC argon2id string.
func parseHash(h string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("argon2 version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("argon2 parameters %q", parts[3])
	}
	// Bounds: a hash from the store must not make one sign-in cost
	// gigabytes or minutes.
	if p.Memory < 8*1024 || p.Memory > 1024*1024 || p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 {
		return p, nil, nil, fmt.Errorf("argon2 parameters out of range: %q", parts[3])
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("bad argon2 salt")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, errors.New("bad argon2 hash")
	}
	return p, salt, key, nil
}

// Verify checks pw against hash: nil, ErrMismatch, or an error for a hash
// it cannot read. The comparison takes the same time whatever matches.
func Verify(hash, pw string) error {
	p, salt, key, err := parseHash(hash)
	if err != nil {
		return err
	}
	if len(pw) > 4*MaxPassword {
		pw = pw[:4*MaxPassword] // still hashed, and still wrong
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return ErrMismatch
	}
	return nil
}

// NeedsRehash says whether hash was made with other costs than p, so that
// a successful sign-in can upgrade it.
func NeedsRehash(hash string, p Params) bool {
	got, _, _, err := parseHash(hash)
	return err != nil || got != p
}

// dummy is a hash for accounts that do not exist: verifying against it
// costs what a real verification costs, so that timing does not tell
// which account names exist.
var dummy = sync.OnceValue(func() string {
	h, err := Hash("no account has this password", Default)
	if err != nil {
		return "$argon2id$v=19$m=65536,t=3,p=2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}
	return h
})

// VerifyMissing spends the time of a verification, for a name with no
// account; it always returns ErrMismatch.
func VerifyMissing(pw string) error {
	_ = Verify(dummy(), pw)
	return ErrMismatch
}
