package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSearchCertificates: each filter alone and together, paging by
// cursor without gaps or repeats, and the page's More.
func TestSearchCertificates(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		now := time.Unix(1_800_000_000, 0).UTC()
		for i := range 30 {
			c := testCert(i)
			c.SANs = []string{fmt.Sprintf("Cam%d.Studio.example.test", i), "shared.studio.example.test"}
			c.Identity = []string{"vendor A", "vendor B", "vendor C"}[i%3]
			if i%2 == 1 {
				c.IssuerID = "rsa-int-1"
			}
			c.IssuedAt = now.Add(time.Duration(i) * time.Hour)
			if i < 5 {
				c.NotAfter = now.Add(-time.Duration(10-i%3) * time.Hour) // expired: 2 last, then 4 and 1, then 3 and 0
			}
			if err := s.PutCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		for _, i := range []int{7, 8} {
			if _, err := s.Revoke(ctx, testCert(i).Serial, now, 1); err != nil {
				t.Fatal(err)
			}
		}
		serials := func(p *CertificatePage) []int64 {
			var out []int64
			for _, c := range p.Certificates {
				out = append(out, c.Serial.Int64()-1000)
			}
			return out
		}
		for _, tc := range []struct {
			q    CertificateQuery
			want []int64
		}{
			{CertificateQuery{Name: "cam12.studio.example.test"}, []int64{12}},
			{CertificateQuery{Name: "CAM12.STUDIO.EXAMPLE.TEST."}, []int64{12}},
			{CertificateQuery{Name: "cam1*"}, []int64{1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}},
			{CertificateQuery{Name: "cam1"}, nil},
			{CertificateQuery{Name: "shared.studio.example.test", Identity: "vendor B", IssuerID: "rsa-int-1"}, []int64{25, 19, 13, 7, 1}},
			{CertificateQuery{Serial: SerialKey(big.NewInt(1003))}, []int64{3}},
			{CertificateQuery{Status: "revoked"}, []int64{8, 7}},
			{CertificateQuery{Status: "expired", Now: now}, []int64{2, 4, 1, 3, 0}},
			{CertificateQuery{Status: "valid", Now: now, IssuerID: "ecdsa-int-1", Name: "cam2*"}, []int64{20, 22, 24, 26, 28}},
			{CertificateQuery{Identity: "nobody"}, nil},
		} {
			page, err := s.SearchCertificates(ctx, tc.q)
			if err != nil {
				t.Fatalf("%+v: %v", tc.q, err)
			}
			if got := serials(page); !slices.Equal(got, tc.want) || page.Next != "" {
				t.Errorf("%+v: %v (next %q), want %v", tc.q, got, page.Next, tc.want)
			}
		}
		if _, err := s.SearchCertificates(ctx, CertificateQuery{Status: "sleeping"}); err == nil {
			t.Error("an unknown status was accepted")
		}

		// Pages walk every result once, in the order of the first page,
		// whatever the order of the query.
		walk := func(q CertificateQuery) []int64 {
			t.Helper()
			var all []int64
			for n := 0; ; n++ {
				page, err := s.SearchCertificates(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, serials(page)...)
				if page.Next == "" {
					return all
				}
				if n > 30 {
					t.Fatal("pages without end")
				}
				q.After = page.Next
			}
		}
		var newest []int64
		for i := 29; i >= 0; i-- {
			newest = append(newest, int64(i))
		}
		if got := walk(CertificateQuery{Limit: 7}); !slices.Equal(got, newest) {
			t.Fatalf("paged by 7: %v", got)
		}
		if got := walk(CertificateQuery{Limit: 2, Status: "expired", Now: now}); !slices.Equal(got, []int64{2, 4, 1, 3, 0}) {
			t.Fatalf("expired by 2: %v", got)
		}
		if got := walk(CertificateQuery{Limit: 4, Name: "shared.studio.example.test", IssuerID: "rsa-int-1"}); !slices.Equal(got, []int64{29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1}) {
			t.Fatalf("one name by 4: %v", got)
		}
		if got := walk(CertificateQuery{Limit: 3, Name: "cam2*"}); !slices.Equal(got, []int64{2, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29}) {
			t.Fatalf("a prefix by 3: %v", got)
		}
		// A certificate with two names under a prefix comes once a page, and
		// a full page of one certificate's names still says there is more.
		twice := testCert(40)
		twice.SANs = []string{"dup1.studio.example.test", "dup2.studio.example.test", "dup3.studio.example.test"}
		if err := s.PutCertificate(ctx, twice); err != nil {
			t.Fatal(err)
		}
		if page, err := s.SearchCertificates(ctx, CertificateQuery{Name: "dup*"}); err != nil || !slices.Equal(serials(page), []int64{40}) || page.Next != "" {
			t.Fatalf("dup*: %v %+v", err, page)
		}
		if page, err := s.SearchCertificates(ctx, CertificateQuery{Name: "dup*", Limit: 2}); err != nil || !slices.Equal(serials(page), []int64{40}) || page.Next == "" {
			t.Fatalf("dup* by 2: %v %+v", err, page)
		}
		// A cursor of another order, or made up, is refused.
		page, _ := s.SearchCertificates(ctx, CertificateQuery{Limit: 2})
		for _, q := range []CertificateQuery{{After: page.Next, Status: "expired", Now: now}, {After: "r-1"}, {After: "rx"}, {After: "e1"}, {After: "p7", Name: "c*"}} {
			if _, err := s.SearchCertificates(ctx, q); !errors.Is(err, ErrBadQuery) {
				t.Errorf("cursor %q with %+v: %v", q.After, q, err)
			}
		}
		if n, err := s.CountIssuedSince(ctx, now.Add(20*time.Hour)); err != nil || n != 10 {
			t.Fatalf("issued since hour 20: %d, %v", n, err)
		}
	})
}

func TestSearchAudit(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		at := time.Unix(1_800_000_000, 0).UTC()
		for i := range 12 {
			a := &AuditRecord{At: at, Actor: fmt.Sprintf("operator op%d", i%3), Action: "certificate_revoked", Target: fmt.Sprint(i), Detail: "reason keyCompromise", Remote: "192.0.2.1"}
			if i == 5 {
				a.Detail = "100% sure_ly"
			}
			if err := s.AddAudit(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		targets := func(recs []*AuditRecord) (out []string) {
			for _, r := range recs {
				out = append(out, r.Target)
			}
			return out
		}
		recs, err := s.SearchAudit(ctx, AuditQuery{Text: "OP1", Limit: 3})
		if err != nil || !slices.Equal(targets(recs), []string{"10", "7", "4", "1"}) {
			t.Fatalf("op1: %v %v", targets(recs), err)
		}
		recs, err = s.SearchAudit(ctx, AuditQuery{Text: "op1", Before: recs[2].ID})
		if err != nil || !slices.Equal(targets(recs), []string{"1"}) {
			t.Fatalf("op1 older: %v %v", targets(recs), err)
		}
		// LIKE's wildcards in the text are plain characters.
		for _, q := range []string{"100%", "sure_ly"} {
			if recs, err := s.SearchAudit(ctx, AuditQuery{Text: q}); err != nil || !slices.Equal(targets(recs), []string{"5"}) {
				t.Fatalf("%q: %v %v", q, targets(recs), err)
			}
		}
		// Every record's action has an underscore; no record has a "%x".
		if recs, _ := s.SearchAudit(ctx, AuditQuery{Text: "_"}); len(recs) != 12 {
			t.Fatalf("_ matched %d", len(recs))
		}
		if recs, _ := s.SearchAudit(ctx, AuditQuery{Text: "%x"}); len(recs) != 0 {
			t.Fatalf("%%x matched %d", len(recs))
		}
	})
}

// TestSearchPlans: every kind of search reads an index in the order of
// its results, so that SQLite stops after a page: no query sorts its
// matches in a temporary b-tree, and none scans the certificates table
// but in rowid order.
func TestSearchPlans(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := time.Unix(1_800_000_000, 0)
	for _, q := range []CertificateQuery{
		{},
		{After: "r10"},
		{Name: "cam1.studio.example.test"},
		{Name: "cam1.studio.example.test", After: "n4"},
		{Name: "cam1*"},
		{Name: "cam1*", After: "p5.cam10"},
		{Serial: "0a1b"},
		{Identity: "vendor A"},
		{IssuerID: "ecdsa-int-1"},
		{IssuerID: "ecdsa-int-1", After: "r10"},
		{Status: "revoked"},
		{Status: "valid", Now: now},
		{Status: "expired", Now: now},
		{Status: "expired", Now: now, After: "e100.5"},
		{Name: "cam1.studio.example.test", Status: "expired", Now: now},
	} {
		query, args, _, err := searchSQL(&q)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		text := strings.Join(plan, "; ")
		if strings.Contains(text, "TEMP B-TREE") {
			t.Errorf("%+v: plan %s", q, text)
		}
		t.Logf("%+v: %s", q, text)
	}
}
