package est

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentEnroll enrolls from many clients at once (each a new TLS
// connection), mixing operations, to let the race detector look.
func TestConcurrentEnroll(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ManualApproval = true })
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), fmt.Sprintf("c%d.%s", i, testDomain))); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := f.client(nil).CACerts(ctx(t)); err != nil {
				errs <- err
			}
			if i%4 == 0 {
				f.srv.Invalidate()
			}
		}()
		// The same key twice at once, without a certificate: one request
		// is queued, both are told to wait.
		key := ecKey()
		wg.Add(1)
		for range 2 {
			go func() {
				defer wg.Done()
				csr := newCSR(t, key, fmt.Sprintf("q%d.%s", i, testDomain))
				if _, err := f.client(nil).Enroll(ctx(t), csr); estStatus(err) != 202 {
					errs <- fmt.Errorf("manual: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := f.ca.count(t); got != n {
		t.Fatalf("%d certificates, want %d", got, n)
	}
	if list, err := f.ca.st.ListPending(ctx(t), ""); err != nil || len(list) != n {
		t.Fatalf("%d pending requests, want %d (%v)", len(list), n, err)
	}
}

// BenchmarkEnrollTLS is a device's enrollment end to end: a new TLS 1.3
// connection with a manufacturer certificate (the globalsign client dials
// for every request), an ECDSA P-256 key and CSR made by the client, a
// certificate signed and durably stored (SQLite, synchronous=FULL).
func BenchmarkEnrollTLS(b *testing.B) {
	f := newFixture(b)
	c := f.client(f.pki.devA)
	i := 0
	for b.Loop() {
		i++
		if _, err := c.Enroll(b.Context(), newCSR(b, ecKey(), fmt.Sprintf("b%d.%s", i, testDomain))); err != nil {
			b.Fatal(err)
		}
	}
}
