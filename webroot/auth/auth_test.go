package auth

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// cheap keeps the tests fast; the format and the checks are the same.
var cheap = Params{Memory: 8 * 1024, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery staple", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if err := Verify(h, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	if err := Verify(h, "correct horse battery stapl"); err != ErrMismatch {
		t.Fatalf("wrong password: %v", err)
	}
	h2, _ := Hash("correct horse battery staple", cheap)
	if h2 == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if !NeedsRehash(h, Default) || NeedsRehash(h, cheap) {
		t.Fatal("NeedsRehash")
	}
	for _, bad := range []string{
		"", "plain", "$argon2i$v=19$m=8192,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=16$m=8192,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", // a gigabyte per sign-in
		"$argon2id$v=19$m=8192,t=1000,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8192,t=1,p=1$!!$AAAAAAAAAAAAAAAAAAAAAA",
	} {
		if err := Verify(bad, "x"); err == nil || err == ErrMismatch {
			t.Errorf("hash %q: %v", bad, err)
		}
	}
	if VerifyMissing("anything") != ErrMismatch {
		t.Fatal("VerifyMissing")
	}
}

func TestCheckPasswordAndNames(t *testing.T) {
	for pw, ok := range map[string]bool{"short": false, "twelve chars": true, strings.Repeat("é", 12): true,
		strings.Repeat("x", 257): false, "bad utf8 \xff\xfe....": false} {
		if (CheckPassword(pw) == nil) != ok {
			t.Errorf("%q: %v", pw, CheckPassword(pw))
		}
	}
	for name, ok := range map[string]bool{"alice": true, "ops-1.b_c": true, "Alice": false, "1st": false, "": false,
		"a b": false, strings.Repeat("a", 65): false, "root;drop": false} {
		if (CheckUserName(name) == nil) != ok {
			t.Errorf("%q: %v", name, CheckUserName(name))
		}
	}
}

func TestRoles(t *testing.T) {
	if !Admin.Allows(Operator) || !Operator.Allows(Viewer) || Viewer.Allows(Operator) || Operator.Allows(Admin) || Role("").Allows(Viewer) {
		t.Fatal("Allows")
	}
	if _, err := ParseRole("root"); err == nil {
		t.Fatal("ParseRole root")
	}
	if r, err := ParseRole("operator"); err != nil || r != Operator {
		t.Fatal(r, err)
	}
	a, ha, _ := NewToken()
	b, _, _ := NewToken()
	if a == b || len(a) != 43 || string(TokenHash(a)) != string(ha) {
		t.Fatal("tokens")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := NewLimiter(func() time.Time { return now })
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("a fresh address is refused")
	}
	// Backoff: 250 ms after one failure, 500 ms after two.
	l.Fail(a)
	if ok, wait := l.Allow(a); ok || wait != 250*time.Millisecond {
		t.Fatalf("after a failure: %v %v", ok, wait)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another address pays for a's failures")
	}
	now = now.Add(250 * time.Millisecond)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("refused after the backoff")
	}
	l.Fail(a)
	if _, wait := l.Allow(a); wait != 500*time.Millisecond {
		t.Fatalf("second backoff %v", wait)
	}
	// Twenty failures within the window: refused until the oldest leaves.
	start := now
	for i := 2; i < AddressFailures; i++ {
		now = now.Add(10 * time.Second)
		l.Fail(a)
	}
	now = now.Add(time.Minute)
	ok, wait := l.Allow(a)
	if ok || wait <= 0 || wait > AddressWindow {
		t.Fatalf("after %d failures: %v %v", AddressFailures, ok, wait)
	}
	now = start.Add(AddressWindow + time.Hour)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("still refused after the window")
	}
	// One IPv6 /64 is one address; a success clears it.
	v1, v2 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	l.Fail(v1)
	if ok, _ := l.Allow(v2); ok {
		t.Fatal("another address of the same /64 escapes the backoff")
	}
	l.Succeed(v2)
	if ok, _ := l.Allow(v1); !ok {
		t.Fatal("a success did not clear the /64")
	}
	// Memory stays bounded.
	for i := range maxAddresses + 10 {
		l.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(l.by); n > maxAddresses {
		t.Fatalf("%d addresses kept", n)
	}
}
