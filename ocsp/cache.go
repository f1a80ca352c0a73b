package ocsp

import (
	"context"
	"errors"
	"hash/maphash"
	"math/big"
	"sync"
	"sync/atomic"
)

// entry is one signed answer, ready to write: the body and every header
// value are computed once, when it is signed.
type entry struct {
	key    string // cacheKey: hash algorithm, issuer index, serial
	iss    *issuerState
	alg    int
	serial []byte // DER INTEGER content, part of key
	st     status

	body []byte
	// Header values, each a one-element slice assigned to the header
	// map as is. Their capacity is 1, so a later Add copies.
	contentLength, cacheControl, lastModified, expires, etag []string
	// Unix seconds.
	thisUpdate, nextUpdate, refreshAt, maxAge int64

	ref        atomic.Bool // CLOCK reference bit
	refreshing atomic.Bool // an asynchronous refresh is under way
	// live is set while the entry is in the cache: from its put until it
	// is replaced, evicted, removed or cleared (always under the shard
	// lock). Aliases are followed only to live entries.
	live atomic.Bool
	slot int // index in the shard's ring; guarded by the shard lock
}

// appendKey appends the cache key of an answer to b. The key holds the
// CertID hash algorithm because the answer echoes the CertID, so a SHA-1
// and a SHA-256 request for one certificate get different answers.
func appendKey(b []byte, alg int, idx uint32, serial []byte) []byte {
	b = append(b, byte(alg), byte(idx>>24), byte(idx>>16), byte(idx>>8), byte(idx))
	return append(b, serial...)
}

// keyPrefixLen is the length of a cache key before the serial.
const keyPrefixLen = 5

// cache holds signed answers, bounded to a fixed number of entries.
//
// It is split in shards, each a map plus a ring of slots swept by the
// CLOCK algorithm: a hit only sets an atomic reference bit under a read
// lock, so concurrent hits never contend on a write lock or a list
// splice as they would with an exact LRU, and eviction still gives every
// entry used since the last sweep a second chance. Entries that were
// never hit again (a scan of random serials, say) go first.
type cache struct {
	seed   maphash.Seed
	shards []shard
}

type shard struct {
	mu    sync.RWMutex
	m     map[string]*entry
	slots []*entry // ring; nil only for slots on the free list
	free  []int
	hand  int
	cap   int
}

// newCache makes a cache of at most size entries. Small caches keep one
// shard; larger ones up to 16, each of at least 256 entries.
func newCache(size int) *cache {
	if size < 1 {
		size = 1
	}
	n := 1
	for n < 16 && size/(n*2) >= 256 {
		n *= 2
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]shard, n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.cap = size / n
		if i < size%n {
			s.cap++
		}
		s.m = make(map[string]*entry)
	}
	return c
}

func (c *cache) shard(key []byte) *shard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.Bytes(c.seed, key)&uint64(len(c.shards)-1)]
}

// get returns the entry for key, or nil.
func (c *cache) get(key []byte) *entry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[string(key)]
	s.mu.RUnlock()
	if e != nil && !e.ref.Load() {
		e.ref.Store(true)
	}
	return e
}

// put stores e unless *epoch no longer equals want: the check is made
// under the shard lock, which invalidations take too, so an answer built
// from a status read before an invalidation is never stored after it.
func (c *cache) put(e *entry, epoch *atomic.Uint64, want uint64) bool {
	s := c.shard([]byte(e.key))
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch.Load() != want {
		return false
	}
	e.live.Store(true)
	if old, ok := s.m[e.key]; ok {
		old.live.Store(false)
		e.slot = old.slot
		s.slots[e.slot] = e
		s.m[e.key] = e
		return true
	}
	switch {
	case len(s.free) > 0:
		e.slot = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	case len(s.slots) < s.cap:
		e.slot = len(s.slots)
		s.slots = append(s.slots, nil)
	default:
		// Every slot is taken: sweep, clearing reference bits, to the
		// first entry not used since the hand last passed it.
		for {
			v := s.slots[s.hand]
			if v.ref.Load() {
				v.ref.Store(false)
				s.hand = (s.hand + 1) % len(s.slots)
				continue
			}
			delete(s.m, v.key)
			v.live.Store(false)
			e.slot = s.hand
			s.hand = (s.hand + 1) % len(s.slots)
			break
		}
	}
	s.slots[e.slot] = e
	s.m[e.key] = e
	return true
}

// remove drops key after bumping *epoch, both under the shard lock.
func (c *cache) remove(key []byte, epoch *atomic.Uint64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	epoch.Add(1)
	if e, ok := s.m[string(key)]; ok {
		e.live.Store(false)
		delete(s.m, e.key)
		s.slots[e.slot] = nil
		s.free = append(s.free, e.slot)
	}
}

// clear drops every entry; the caller bumps the epoch first.
func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			e.live.Store(false)
		}
		s.m = make(map[string]*entry)
		s.slots, s.free, s.hand = nil, nil, 0
		s.mu.Unlock()
	}
}

// len counts the entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// stale lists the entries due for refresh at now (Unix seconds).
func (c *cache) stale(now int64) []*entry {
	var out []*entry
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		for _, e := range s.m {
			if now >= e.refreshAt {
				out = append(out, e)
			}
		}
		s.mu.RUnlock()
	}
	return out
}

// aliases maps raw requests to the entries answering them: the escaped
// path of a GET, or the body of a POST. A repeated request then costs one
// lookup, without the URL and base64 decoding, the DER parsing and the
// issuer and cache lookups. An alias is a hint, followed only while its
// entry is live, so dropping an entry from the cache (a revocation, a
// reload, an eviction, a refresh replacing it) is enough to stop every
// alias of it from answering. Requests with a nonce are never aliased.
//
// Reads take no lock (sync.Map). The number of aliases is bounded: when
// it passes max, they are all dropped and rebuilt by the requests that
// follow.
type aliases struct {
	m   sync.Map // string -> *entry
	n   atomic.Int64
	max int64
}

func newAliases(size int) *aliases {
	return &aliases{max: int64(max(size, 1))}
}

// get returns the live entry key is an alias of, or nil. It does not
// allocate.
func (a *aliases) get(key string) *entry {
	v, ok := a.m.Load(key)
	if !ok {
		return nil
	}
	if e := v.(*entry); e.live.Load() {
		return e
	}
	return nil
}

// put makes key an alias of e; key must not share memory that is reused.
func (a *aliases) put(key string, e *entry) {
	if _, loaded := a.m.Swap(key, e); loaded {
		return
	}
	if a.n.Add(1) > a.max {
		a.clear()
	}
}

// sweep drops the aliases of entries no longer live, and counts the
// others again (a count that puts running meanwhile may leave short).
func (a *aliases) sweep() {
	var kept int64
	a.m.Range(func(k, v any) bool {
		if v.(*entry).live.Load() || !a.m.CompareAndDelete(k, v) {
			kept++
		}
		return true
	})
	a.n.Store(kept)
}

// clear drops every alias.
func (a *aliases) clear() {
	a.m.Clear()
	a.n.Store(0)
}

// flight coalesces concurrent loads of one key: the first caller runs
// the load, the others wait for its result.
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done    chan struct{}
	e       *entry
	err     error
	waiters int
}

var errLoadAborted = errors.New("answer load aborted")

// do runs load for key unless a load of key is already under way, in
// which case it waits for that one (or for ctx).
func (f *flight) do(ctx context.Context, key []byte, load func() (*entry, error)) (*entry, error) {
	f.mu.Lock()
	if c, ok := f.calls[string(key)]; ok {
		c.waiters++
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.e, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = make(map[string]*call)
	}
	k := string(key)
	c := &call{done: make(chan struct{}), err: errLoadAborted}
	f.calls[k] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.e, c.err = load()
	return c.e, c.err
}

// waiting reports how many callers wait on the load of key.
func (f *flight) waiting(key []byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[string(key)]; ok {
		return c.waiters
	}
	return 0
}

// serialFromDER decodes the content of a DER INTEGER.
func serialFromDER(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return n
}
