package ocsp

import (
	"math/big"
	"sync/atomic"
	"testing"
)

func TestCacheClock(t *testing.T) {
	c := newCache(4)
	var epoch atomic.Uint64
	add := func(k string) {
		if !c.put(&entry{key: k}, &epoch, epoch.Load()) {
			t.Fatalf("put %s refused", k)
		}
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		add(k)
	}
	if c.get([]byte("a")) == nil || c.get([]byte("c")) == nil {
		t.Fatal("entries missing")
	}
	// Full: the hand passes a (used, second chance) and takes b.
	add("e")
	if c.len() != 4 {
		t.Fatalf("len %d, cap 4", c.len())
	}
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true, "e": true} {
		if got := c.get([]byte(k)) != nil; got != want {
			t.Errorf("%s cached: %v, want %v", k, got, want)
		}
	}
	// Replacing an entry keeps its slot; removing one frees it.
	add("e")
	c.remove([]byte("a"), &epoch)
	add("f")
	if c.len() != 4 || c.get([]byte("a")) != nil || c.get([]byte("f")) == nil {
		t.Errorf("after remove and add: len %d", c.len())
	}
	// An entry loaded before an invalidation is not stored after it.
	want := epoch.Load()
	c.remove([]byte("zz"), &epoch)
	if c.put(&entry{key: "g"}, &epoch, want) || c.get([]byte("g")) != nil {
		t.Error("stale entry stored")
	}
	c.clear()
	if c.len() != 0 {
		t.Errorf("len %d after clear", c.len())
	}
	add("h")
	if c.get([]byte("h")) == nil {
		t.Error("cache unusable after clear")
	}
}

func TestCacheBound(t *testing.T) {
	for _, size := range []int{1, 3, 255, 1000, 20000, 100003} {
		c := newCache(size)
		total := 0
		for i := range c.shards {
			total += c.shards[i].cap
		}
		if total != size {
			t.Errorf("size %d: shard capacities sum to %d", size, total)
		}
		var epoch atomic.Uint64
		var kb [16]byte
		for i := range 2*size + 10 {
			k := appendKey(kb[:0], 0, 1, big.NewInt(int64(i)).Bytes())
			c.put(&entry{key: string(k)}, &epoch, 0)
			if i%3 == 0 {
				c.get(k)
			}
		}
		if n := c.len(); n != size {
			t.Errorf("size %d: holds %d", size, n)
		}
	}
}

func TestSerialDER(t *testing.T) {
	for _, s := range []string{"0", "1", "7f", "80", "ff", "100", "-1", "-80", "-81", "-ff", "-100", "123456789abcdef0123456789abcdef"} {
		n, _ := new(big.Int).SetString(s, 16)
		der := serialToDER(n)
		if !minimalInteger(der) {
			t.Errorf("%s: %x not minimal", s, der)
		}
		if back := serialFromDER(der); back.Cmp(n) != 0 {
			t.Errorf("%s: %x decodes to %s", s, der, back.Text(16))
		}
	}
}
