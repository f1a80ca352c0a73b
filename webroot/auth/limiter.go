package auth

import (
	"net/netip"
	"sync"
	"time"
)

// Lockout policy. An account locks after AccountFailures failed sign-ins
// in a row, for AccountLock; a success resets the count. An address (an
// IPv6 /64 counts as one) that failed AddressFailures times within
// AddressWindow is refused until the oldest failure leaves the window,
// and after each failure waits a growing delay before its next attempt.
const (
	AccountFailures = 5
	AccountLock     = 15 * time.Minute
	AddressFailures = 20
	AddressWindow   = 15 * time.Minute
	maxBackoff      = 8 * time.Second
	maxAddresses    = 10000
)

// Limiter counts failed sign-ins per client address, in memory (an
// account's count is in the store, shared by every node).
type Limiter struct {
	now func() time.Time
	mu  sync.Mutex
	by  map[netip.Prefix][]time.Time // failures in the window, oldest first
}

// NewLimiter returns a Limiter on clock now (nil: time.Now).
func NewLimiter(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{now: now, by: map[netip.Prefix][]time.Time{}}
}

// addressKey is the address an attacker cannot easily multiply: the
// IPv4 address, or the IPv6 /64.
func addressKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

func (l *Limiter) recent(k netip.Prefix, now time.Time) []time.Time {
	f := l.by[k]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= AddressWindow {
		i++
	}
	if i == len(f) {
		delete(l.by, k)
		return nil
	}
	f = f[i:]
	l.by[k] = f
	return f
}

// Allow says whether addr may try a password now, and if not how long it
// should wait.
func (l *Limiter) Allow(addr netip.Addr) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.recent(addressKey(addr), now)
	if len(f) == 0 {
		return true, 0
	}
	if len(f) >= AddressFailures {
		return false, f[0].Add(AddressWindow).Sub(now)
	}
	// 250 ms after the first failure, doubling, at most maxBackoff.
	wait := min(250*time.Millisecond<<(len(f)-1), maxBackoff)
	if next := f[len(f)-1].Add(wait); now.Before(next) {
		return false, next.Sub(now)
	}
	return true, 0
}

// Fail records a failed attempt from addr.
func (l *Limiter) Fail(addr netip.Addr) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := addressKey(addr)
	f := l.recent(k, now)
	if f == nil && len(l.by) >= maxAddresses {
		// Many addresses at once: forget the one whose last failure is
		// oldest rather than grow without bound.
		var oldest netip.Prefix
		var at time.Time
		for p, fs := range l.by {
			if last := fs[len(fs)-1]; at.IsZero() || last.Before(at) {
				oldest, at = p, last
			}
		}
		delete(l.by, oldest)
	}
	if len(f) >= AddressFailures {
		f = f[1:]
	}
	l.by[k] = append(f, now)
}

// Succeed forgets addr's failures.
func (l *Limiter) Succeed(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.by, addressKey(addr))
}
