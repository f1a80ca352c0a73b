package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
)

// Role is what an account may do. Each role may do what the roles below
// it may.
type Role string

const (
	// Viewer reads every page and API.
	Viewer Role = "viewer"
	// Operator also approves and denies requests, revokes certificates
	// and releases names.
	Operator Role = "operator"
	// Admin also runs the CA's lifecycle, manages accounts and reloads
	// the configuration.
	Admin Role = "admin"
)

// Roles lists the roles, least first.
var Roles = []Role{Viewer, Operator, Admin}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// Allows says whether r may do what needs.
func (r Role) Allows(need Role) bool { return r.rank() > 0 && r.rank() >= need.rank() }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.rank() > 0 {
		return r, nil
	}
	return "", fmt.Errorf("role %q: want viewer, operator or admin", s)
}

var userName = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,63}$`)

// CheckUserName says why an account name is refused, or nil: lower-case
// letters, digits, '.', '_' and '-', starting with a letter, at most 64.
func CheckUserName(name string) error {
	if !userName.MatchString(name) {
		return fmt.Errorf("account name %q: want a lower-case letter, then up to 63 lower-case letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// NewToken returns a random token for a cookie or a form, and the SHA-256
// the store keeps instead: reading the database gives no live session.
func NewToken() (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, TokenHash(token), nil
}

// TokenHash is the stored form of a token.
func TokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
