package est

import (
	"crypto/aes"
	"encoding/binary"
	"fmt"
)

// keyWrapIV is the default initial value of RFC 3394 2.2.3.1.
var keyWrapIV = [8]byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// aesKeyWrap wraps key data (a multiple of 8 bytes, at least 16) under
// kek (16, 24 or 32 bytes) with the AES key wrap of RFC 3394 2.2.1, in
// its index-based form. The result is 8 bytes longer than the key data.
func aesKeyWrap(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) < 16 || len(plaintext)%8 != 0 {
		return nil, fmt.Errorf("AES key wrap: key data of %d bytes: want a multiple of 8, at least 16", len(plaintext))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("AES key wrap: %w", err)
	}
	n := len(plaintext) / 8
	out := make([]byte, 8+len(plaintext))
	copy(out[:8], keyWrapIV[:]) // A
	copy(out[8:], plaintext)    // R[1..n]
	var b [16]byte
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			copy(b[:8], out[:8])
			copy(b[8:], r)
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(b[:8])^t)
			copy(r, b[8:])
		}
	}
	clear(b[:])
	return out, nil
}
