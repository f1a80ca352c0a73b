package est

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// aesKeyUnwrap is the inverse of aesKeyWrap (RFC 3394 2.2.2) with the
// integrity check of 2.2.3, for the tests: the server only wraps.
func aesKeyUnwrap(kek, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < 24 || len(ciphertext)%8 != 0 {
		return nil, fmt.Errorf("AES key unwrap: wrapped data of %d bytes: want a multiple of 8, at least 24", len(ciphertext))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(ciphertext)/8 - 1
	a := binary.BigEndian.Uint64(ciphertext[:8])
	r := bytes.Clone(ciphertext[8:])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			ri := r[8*(i-1) : 8*i]
			binary.BigEndian.PutUint64(b[:8], a^uint64(n*j+i))
			copy(b[8:], ri)
			block.Decrypt(b[:], b[:])
			a = binary.BigEndian.Uint64(b[:8])
			copy(ri, b[8:])
		}
	}
	if a != binary.BigEndian.Uint64(keyWrapIV[:]) {
		return nil, errKeyUnwrap
	}
	return r, nil
}

var errKeyUnwrap = errors.New("AES key unwrap: integrity check failed")

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAESKeyWrapRFC3394 checks the test vectors of RFC 3394 section 4.
func TestAESKeyWrapRFC3394(t *testing.T) {
	const (
		kek128 = "000102030405060708090A0B0C0D0E0F"
		kek192 = "000102030405060708090A0B0C0D0E0F1011121314151617"
		kek256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
		data16 = "00112233445566778899AABBCCDDEEFF"
		data24 = "00112233445566778899AABBCCDDEEFF0001020304050607"
		data32 = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
	)
	for _, v := range []struct {
		section, kek, data, wrapped string
	}{
		{"4.1", kek128, data16, "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5"},
		{"4.2", kek192, data16, "96778B25AE6CA435 F92B5B97C050AED2 468AB8A17AD84E5D"},
		{"4.3", kek256, data16, "64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7"},
		{"4.4", kek192, data24, "031D33264E15D332 68F24EC260743EDC E1C6C7DDEE725A93 6BA814915C6762D2"},
		{"4.5", kek256, data24, "A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1"},
		{"4.6", kek256, data32, "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	} {
		t.Run(v.section, func(t *testing.T) {
			kek, data, want := unhex(t, v.kek), unhex(t, v.data), unhex(t, v.wrapped)
			got, err := aesKeyWrap(kek, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("wrap = %X, want %X", got, want)
			}
			back, err := aesKeyUnwrap(kek, got)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("unwrap = %X, %v", back, err)
			}
			// Any changed bit fails the integrity check.
			got[len(got)-1] ^= 1
			if _, err := aesKeyUnwrap(kek, got); !errors.Is(err, errKeyUnwrap) {
				t.Fatalf("tampered unwrap: %v", err)
			}
		})
	}
}

func TestAESKeyWrapErrors(t *testing.T) {
	kek := make([]byte, 16)
	for _, n := range []int{0, 8, 15, 17, 20} {
		if _, err := aesKeyWrap(kek, make([]byte, n)); err == nil {
			t.Errorf("wrapped %d bytes of key data", n)
		}
	}
	if _, err := aesKeyWrap(make([]byte, 20), make([]byte, 16)); err == nil {
		t.Error("wrapped under a 20-byte key")
	}
	// A wrong key-encryption key is caught by the integrity check.
	wrapped, err := aesKeyWrap(kek, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{1}, 16)
	if _, err := aesKeyUnwrap(other, wrapped); !errors.Is(err, errKeyUnwrap) {
		t.Fatalf("unwrap with another key: %v", err)
	}
}
