package est

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/nmos-certs/nmos-certs/est/kek"
)

// Object identifiers of the symmetric EnvelopedData (RFC 5652, RFC 3565).
var (
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES128Wrap    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	oidAES192Wrap    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}
	oidAES256Wrap    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
)

// CMS versions (RFC 5652 6.1, 6.2.3).
const (
	envelopedDataVersionKEK = 2 // recipientInfos hold a version 4 kekri
	kekRecipientInfoVersion = 4
)

// aesWrapOID is the RFC 3565 key wrap algorithm for a key-encryption key
// of this many bytes.
func aesWrapOID(kekLen int) (asn1.ObjectIdentifier, error) {
	switch kekLen {
	case 16:
		return oidAES128Wrap, nil
	case 24:
		return oidAES192Wrap, nil
	case 32:
		return oidAES256Wrap, nil
	}
	return nil, fmt.Errorf("no AES key wrap for a %d-byte key-encryption key", kekLen)
}

// envelopeKEK encrypts content, of type contentType, for the holders of
// a previously distributed symmetric key (RFC 7030 4.4.2, RFC 5652 6.2.3):
//
//	ContentInfo ::= SEQUENCE {
//	  contentType id-envelopedData,
//	  content [0] EXPLICIT EnvelopedData ::= SEQUENCE {
//	    version 2,
//	    recipientInfos SET OF RecipientInfo: one
//	      kekri [2] IMPLICIT KEKRecipientInfo ::= SEQUENCE {
//	        version 4,
//	        kekid KEKIdentifier ::= SEQUENCE { keyIdentifier OCTET STRING },
//	        keyEncryptionAlgorithm SEQUENCE { id-aes{128,192,256}-wrap },
//	        encryptedKey OCTET STRING },  -- RFC 3394 wrap of the CEK
//	    encryptedContentInfo SEQUENCE {
//	      contentType,
//	      contentEncryptionAlgorithm SEQUENCE { id-aes256-CBC, OCTET STRING iv },
//	      encryptedContent [0] IMPLICIT OCTET STRING } } }
//
// The key wrap algorithm identifiers have no parameters (RFC 3565 2.3.2).
// The content-encryption key and the IV are fresh random values; the
// content is padded as RFC 5652 6.3 says.
func envelopeKEK(content []byte, contentType asn1.ObjectIdentifier, k *kek.Key) ([]byte, error) {
	wrapOID, err := aesWrapOID(len(k.Secret()))
	if err != nil {
		return nil, err
	}
	cek := make([]byte, 32)
	defer clear(cek)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(cek); err != nil {
		return nil, fmt.Errorf("content-encryption key: %w", err)
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("content-encryption IV: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(content)%aes.BlockSize
	buf := make([]byte, len(content)+pad)
	copy(buf, content)
	for i := len(content); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	wrapped, err := aesKeyWrap(k.Secret(), cek)
	if err != nil {
		return nil, err
	}

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(oidEnvelopedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // EnvelopedData
				b.AddASN1Int64(envelopedDataVersionKEK)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { // recipientInfos
					b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // kekri
						b.AddASN1Int64(kekRecipientInfoVersion)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // kekid
							b.AddASN1OctetString(k.ID())
						})
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // keyEncryptionAlgorithm
							b.AddASN1ObjectIdentifier(wrapOID)
						})
						b.AddASN1OctetString(wrapped) // encryptedKey
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // encryptedContentInfo
					b.AddASN1ObjectIdentifier(contentType)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidAES256CBC)
						b.AddASN1OctetString(iv)
					})
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(buf)
					})
				})
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode EnvelopedData: %w", err)
	}
	return der, nil
}
