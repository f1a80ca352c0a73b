package store

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"testing"
	"time"
)

// TestSearchCertificates: each filter alone and together, paging by
// cursor without gaps or repeats, and the page's More.
func TestSearchCertificates(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
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
			c.NotAfter = now.Add(-time.Hour) // expired
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
		{CertificateQuery{Name: "cam1*"}, []int64{19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 1}},
		{CertificateQuery{Name: "cam1"}, nil},
		{CertificateQuery{Name: "shared.studio.example.test", Identity: "vendor B", IssuerID: "rsa-int-1"}, []int64{25, 19, 13, 7, 1}},
		{CertificateQuery{Serial: SerialKey(big.NewInt(1003))}, []int64{3}},
		{CertificateQuery{Status: "revoked"}, []int64{8, 7}},
		{CertificateQuery{Status: "expired", Now: now}, []int64{4, 3, 2, 1, 0}},
		{CertificateQuery{Status: "valid", Now: now, IssuerID: "ecdsa-int-1", Name: "cam2*"}, []int64{28, 26, 24, 22, 20}},
		{CertificateQuery{Identity: "nobody"}, nil},
	} {
		page, err := s.SearchCertificates(ctx, tc.q)
		if err != nil {
			t.Fatalf("%+v: %v", tc.q, err)
		}
		if got := serials(page); !slices.Equal(got, tc.want) || page.More {
			t.Errorf("%+v: %v (more %v), want %v", tc.q, got, page.More, tc.want)
		}
	}
	if _, err := s.SearchCertificates(ctx, CertificateQuery{Status: "sleeping"}); err == nil {
		t.Error("an unknown status was accepted")
	}

	// Pages of 7 walk all 30 once, newest first.
	var all []int64
	q := CertificateQuery{Limit: 7}
	for n := 0; ; n++ {
		page, err := s.SearchCertificates(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, serials(page)...)
		if !page.More {
			if n != 4 || len(page.Certificates) != 2 {
				t.Fatalf("last page %d has %d", n, len(page.Certificates))
			}
			break
		}
		q.Before = page.Cursors[len(page.Cursors)-1]
	}
	for i, v := range all {
		if v != int64(29-i) {
			t.Fatalf("paged %v", all)
		}
	}
	if n, err := s.CountIssuedSince(ctx, now.Add(20*time.Hour)); err != nil || n != 10 {
		t.Fatalf("issued since hour 20: %d, %v", n, err)
	}
}

func TestSearchAudit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
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
}
