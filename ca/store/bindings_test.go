package store

import (
	"context"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"
)

func boundCert(i int, holder string, names ...string) *Certificate {
	c := testCert(i)
	c.SANs, c.Holder = names, holder
	c.Bind = &Binding{Lapsed: c.IssuedAt.Add(-30 * 24 * time.Hour)}
	return c
}

func TestNameBinding(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		if err := s.PutCertificate(ctx, boundCert(1, "device A", "cam1.studio.example.test", "cam1-alt.studio.example.test")); err != nil {
			t.Fatal(err)
		}
		// Another holder: refused, and nothing of it is stored.
		err := s.PutCertificate(ctx, boundCert(2, "device B", "cam2.studio.example.test", "cam1-alt.studio.example.test"))
		var nb *NameBoundError
		if !errors.As(err, &nb) || nb.Name != "cam1-alt.studio.example.test" || nb.Holder != "device A" {
			t.Fatalf("other holder: %v", err)
		}
		if _, err := s.Certificate(ctx, testCert(2).Serial); !errors.Is(err, ErrNotFound) {
			t.Fatalf("refused certificate stored: %v", err)
		}
		if b, _ := s.NameBindings(ctx, BindingFilter{Name: "cam2.studio.example.test"}); len(b) != 0 {
			t.Fatalf("refused certificate bound %v", b[0])
		}
		// The same holder renews; the binding's expiry follows.
		renewal := boundCert(3, "device A", "cam1.studio.example.test")
		renewal.NotAfter = renewal.NotAfter.Add(24 * time.Hour)
		if err := s.PutCertificate(ctx, renewal); err != nil {
			t.Fatal(err)
		}
		bs, err := s.NameBindings(ctx, BindingFilter{Holder: "device A"})
		if err != nil || len(bs) != 2 {
			t.Fatalf("bindings %v, %v", bs, err)
		}
		if bs[0].Name != "cam1-alt.studio.example.test" || bs[1].Name != "cam1.studio.example.test" || !bs[1].Expires.Equal(renewal.NotAfter) ||
			bs[1].Serial.Cmp(renewal.Serial) != 0 || !bs[1].Since.Equal(testCert(1).IssuedAt) {
			t.Fatalf("bindings %+v %+v", bs[0], bs[1])
		}
		// A certificate without Bind (the appliance's own) is not checked.
		free := testCert(4)
		free.SANs = []string{"cam1.studio.example.test"}
		if err := s.PutCertificate(ctx, free); err != nil {
			t.Fatal(err)
		}
		// Released: another holder may take the name, and the release is audited.
		if _, err := s.ReleaseName(ctx, "cam1-alt.studio.example.test", "operator alice (cli)", "cli", time.Unix(1_800_000_100, 0)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReleaseName(ctx, "cam1-alt.studio.example.test", "x", "cli", time.Now()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second release: %v", err)
		}
		if err := s.PutCertificate(ctx, boundCert(5, "device B", "cam1-alt.studio.example.test")); err != nil {
			t.Fatal(err)
		}
		// Take-over by an operator's decision, audited, and only from the
		// holder the operator was shown.
		over := boundCert(6, "device C", "cam1.studio.example.test")
		over.Bind.TakeOver, over.Bind.Actor = map[string]string{"cam1.studio.example.test": "device B"}, "operator bob (cli)"
		if err := s.PutCertificate(ctx, over); !errors.As(err, &nb) || nb.Holder != "device A" {
			t.Fatalf("take-over from a holder not shown: %v", err)
		}
		over.Bind.TakeOver["cam1.studio.example.test"] = "device A"
		if err := s.PutCertificate(ctx, over); err != nil {
			t.Fatal(err)
		}
		// A lapsed binding is free: its certificates expired before Lapsed.
		lapsed := boundCert(7, "device D", "cam1-alt.studio.example.test")
		lapsed.Bind.Lapsed = testCert(5).NotAfter.Add(time.Second)
		if err := s.PutCertificate(ctx, lapsed); err != nil {
			t.Fatal(err)
		}
		audit, err := s.Audit(ctx, 0)
		if err != nil || len(audit) != 3 {
			t.Fatalf("audit %v, %v", audit, err)
		}
		if audit[2].Action != "name_released" || audit[2].Actor != "operator alice (cli)" || audit[2].Target != "cam1-alt.studio.example.test" ||
			audit[1].Action != "name_transferred" || audit[1].Actor != "operator bob (cli)" || audit[0].Action != "name_transferred" {
			for _, a := range audit {
				t.Logf("%+v", a)
			}
			t.Fatal("audit records")
		}
		evs, _ := s.EventsSince(ctx, 0)
		if len(evs) == 0 || evs[len(evs)-1].Kind != EventNameReleased {
			t.Fatalf("events %v", evs)
		}
	})
}

// TestNameBindingRace: many holders racing for one name, batched into
// the same commits: exactly one wins.
func TestNameBindingRace(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, lost := 0, 0
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := boundCert(100+i, "device "+big.NewInt(int64(i)).String(), "contested.studio.example.test")
				err := s.PutCertificate(ctx, c)
				mu.Lock()
				defer mu.Unlock()
				var nb *NameBoundError
				switch {
				case err == nil:
					won++
				case errors.As(err, &nb):
					lost++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if won != 1 || lost != 15 {
			t.Fatalf("won %d, lost %d", won, lost)
		}
	})
}

func TestSameKeyRenewal(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		orig := testCert(1)
		if err := s.PutCertificate(ctx, orig); err != nil {
			t.Fatal(err)
		}
		again := testCert(2)
		again.SPKIHash = orig.SPKIHash
		if err := s.PutCertificate(ctx, again); !errors.Is(err, ErrKeyReused) {
			t.Fatalf("same key without Renews: %v", err)
		}
		again.Renews = orig.Serial
		if err := s.PutCertificate(ctx, again); err != nil {
			t.Fatal(err)
		}
		got, err := s.Certificate(ctx, again.Serial)
		if err != nil || got.Renews == nil || got.Renews.Cmp(orig.Serial) != 0 {
			t.Fatalf("renewal %+v, %v", got, err)
		}
		if used, err := s.KeyUsed(ctx, orig.SPKIHash); !used || err != nil {
			t.Fatalf("KeyUsed %v %v", used, err)
		}
		// Another reason revokes the one certificate; keyCompromise revokes
		// every certificate of the key.
		third := testCert(3)
		third.SPKIHash, third.Renews = orig.SPKIHash, again.Serial
		if err := s.PutCertificate(ctx, third); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, third.Serial, time.Now(), 4); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.Certificate(ctx, orig.Serial); c.Revoked {
			t.Fatal("superseded revoked the other certificates of the key")
		}
		before, _ := s.LastEvent(ctx)
		if _, err := s.Revoke(ctx, again.Serial, time.Now(), ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.Certificate(ctx, orig.Serial); !c.Revoked || c.Reason != ReasonKeyCompromise {
			t.Fatalf("keyCompromise left the first certificate of the key %+v", c)
		}
		evs, _ := s.EventsSince(ctx, before)
		if len(evs) != 2 {
			t.Fatalf("%d revocation events, want 2 (the certificate revoked and the other of its key)", len(evs))
		}
	})
}
