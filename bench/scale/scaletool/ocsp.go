package main

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/nmos-certs/nmos-certs/bench/internal/benchutil"
)

// OCSPReport is what ocsp prints.
type OCSPReport struct {
	Serials int `json:"serials"`
	Clients int `json:"clients"`
	// First is the first GET for each serial: the responder looks the
	// certificate up in the store and signs an answer.
	First Percentiles `json:"first_ms"`
	// Again is every later GET for the same serials: the cached answer.
	Again       Percentiles `json:"again_ms"`
	AgainPerSec float64     `json:"again_per_s"`
	// ServerReadBytesPerFirst and ServerReadCallsPerFirst are what the
	// server process read through read system calls (rchar and syscr in
	// /proc/<pid>/io) per first GET: the request from its socket, and
	// the SQLite pages its own caches did not hold.
	ServerReadBytesPerFirst *float64 `json:"server_read_bytes_per_first,omitempty"`
	ServerReadCallsPerFirst *float64 `json:"server_read_calls_per_first,omitempty"`
	Good                    int      `json:"good"`
	Errors                  int      `json:"errors"`
	FirstError              string   `json:"first_error,omitempty"`
}

// ocspLatency asks a running appliance about each serial of a file by
// OCSP GET (RFC 5019 form, /ocsp/<base64 of the DER request>), once and
// then again, over keep-alive connections, and checks every first answer
// (signature, serial, status good).
func ocspLatency(args []string) (any, error) {
	fs := flag.NewFlagSet("ocsp", flag.ContinueOnError)
	base := fs.String("base", "", "the appliance's plain HTTP listener, e.g. http://127.0.0.1:19011")
	issuerID := fs.String("issuer", "ecdsa-int-1", "issuer generation ID (its certificate is fetched from /ca/<ID>.crt)")
	serialsFile := fs.String("serials", "", "file of hexadecimal serials")
	limit := fs.Int("n", 0, "use at most this many serials (0: all)")
	clients := fs.Int("c", 1, "concurrent clients")
	rounds := fs.Int("rounds", 3, "passes over the serials once their answers are cached")
	sha := fs.Int("sha", 1, "CertID hash: 1 or 256")
	pid := fs.Int("pid", 0, "server process ID, to report its reads per first GET")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *base == "" || *serialsFile == "" || *clients < 1 {
		return nil, errors.New("need -base, -serials and -c >= 1")
	}
	hash := crypto.SHA1
	if *sha == 256 {
		hash = crypto.SHA256
	}
	list, err := readSerials(*serialsFile)
	if err != nil {
		return nil, err
	}
	if *limit > 0 && len(list) > *limit {
		list = list[:*limit]
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *clients, MaxConnsPerHost: *clients, DisableCompression: true},
	}
	issuer, err := fetchCert(client, *base+"/ca/"+*issuerID+".crt")
	if err != nil {
		return nil, err
	}
	serialNums, err := parseSerials(list)
	if err != nil {
		return nil, err
	}
	urls := make([]string, len(list))
	for i, n := range serialNums {
		der, err := certIDRequest(issuer, n, hash)
		if err != nil {
			return nil, err
		}
		urls[i] = *base + "/ocsp/" + base64.StdEncoding.EncodeToString(der)
	}
	// Open the connections first, so that no timed request dials.
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() { _, _ = fetchCert(client, *base+"/ca/"+*issuerID+".crt") })
	}
	wg.Wait()

	rep := OCSPReport{Serials: len(list), Clients: *clients}
	var io0 ioCounters
	if *pid > 0 {
		if io0, err = procIO(strconv.Itoa(*pid)); err != nil {
			return nil, err
		}
	}
	bodies := make([][]byte, len(urls))
	first, err := pass(client, urls, *clients, bodies)
	if err != nil {
		return nil, err
	}
	if *pid > 0 {
		io1, err := procIO(strconv.Itoa(*pid))
		if err != nil {
			return nil, err
		}
		rd, _, calls, _ := io1.per(io0, len(urls))
		rep.ServerReadBytesPerFirst, rep.ServerReadCallsPerFirst = &rd, &calls
	}
	rep.First = percentiles(first)

	var again []time.Duration
	start := time.Now()
	for range *rounds {
		d, err := pass(client, urls, *clients, nil)
		if err != nil {
			return nil, err
		}
		again = append(again, d...)
	}
	if len(again) > 0 {
		rep.Again = percentiles(again)
		rep.AgainPerSec = round(float64(len(again))/time.Since(start).Seconds(), 0)
	}

	for i, b := range bodies {
		resp, err := xocsp.ParseResponse(b, issuer)
		switch {
		case err != nil:
		case resp.SerialNumber.Cmp(serialNums[i]) != 0:
			err = fmt.Errorf("answer for serial %x, asked %x", resp.SerialNumber, serialNums[i])
		case resp.Status != xocsp.Good:
			err = fmt.Errorf("serial %x: status %d, want good", serialNums[i], resp.Status)
		}
		if err != nil {
			rep.Errors++
			if rep.FirstError == "" {
				rep.FirstError = err.Error()
			}
			continue
		}
		rep.Good++
	}
	return rep, nil
}

// pass GETs every URL once with the given number of clients and returns
// the latencies; bodies, when not nil, receives each answer.
func pass(client *http.Client, urls []string, clients int, bodies [][]byte) ([]time.Duration, error) {
	lat := make([]time.Duration, len(urls))
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for i := w; i < len(urls); i += clients {
				start := time.Now()
				resp, err := client.Get(urls[i])
				if err != nil {
					errs[w] = err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(start)
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("GET %s: %s", urls[i], resp.Status)
				}
				if err != nil {
					errs[w] = err
					return
				}
				if bodies != nil {
					bodies[i] = b
				}
			}
		})
	}
	wg.Wait()
	return lat, errors.Join(errs...)
}

func fetchCert(client *http.Client, url string) (*x509.Certificate, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return x509.ParseCertificate(b)
}

// certIDRequest is the OCSP request for serial of issuer.
func certIDRequest(issuer *x509.Certificate, serial *big.Int, hash crypto.Hash) ([]byte, error) {
	name, key, err := benchutil.IssuerHashes(issuer, hash)
	if err != nil {
		return nil, err
	}
	req := xocsp.Request{HashAlgorithm: hash, IssuerNameHash: name, IssuerKeyHash: key, SerialNumber: serial}
	return req.Marshal()
}
