package layercrypt

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/containers/ocicrypt/blockcipher"
	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/keywrap/jwe"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// The OCI image encryption annotations (ocicrypt's) and crwrap's plaintext digest.
const (
	// KeysAnnotation holds the layer key wrapped for each recipient: comma-separated base64 JWEs.
	KeysAnnotation = "org.opencontainers.image.enc.keys.jwe"
	// PubOptsAnnotation holds the cipher name and HMAC (base64 JSON).
	PubOptsAnnotation = "org.opencontainers.image.enc.pubopts"
	// PlaintextDigestAnnotation is the digest of the original (unencrypted) blob.
	PlaintextDigestAnnotation = "org.crwrap.layer.plaintext.digest"
	// MediaTypeSuffix ends the media type of an encrypted layer.
	MediaTypeSuffix = "+encrypted"
)

var (
	// ErrWrongKey is wrapped when none of a layer's recipients is the given private key.
	ErrWrongKey = errors.New("layer is not encrypted for this key")
	// ErrNotEncrypted is wrapped when a descriptor is not an encrypted layer.
	ErrNotEncrypted = errors.New("layer is not encrypted")
	// ErrDigestMismatch is wrapped when the decrypted stream is not the blob the manifest names.
	ErrDigestMismatch = errors.New("decrypted layer does not match its plaintext digest")
)

// Layer is an encrypted layer ready to push: a go-containerregistry layer whose blob is the
// ciphertext, plus the annotations its manifest descriptor must carry (Annotations).
type Layer struct {
	plain       v1.Layer
	key, nonce  []byte
	digest      v1.Hash
	size        int64
	mediaType   types.MediaType
	annotations map[string]string
}

var _ v1.Layer = (*Layer)(nil)

// Encrypt encrypts layer for the recipients. It reads the layer's blob once here to compute
// the ciphertext's digest and HMAC, and again each time the returned layer's blob is read
// (AES-CTR with the same key and nonce gives the same bytes): layer must be re-readable,
// as file-backed layers are, and must not change in between.
func Encrypt(layer v1.Layer, recipients ...*PublicKey) (*Layer, error) {
	l, err := encrypt(layer, recipients)
	if err != nil {
		return nil, fmt.Errorf("encrypt layer: %w", err)
	}
	return l, nil
}

func encrypt(layer v1.Layer, recipients []*PublicKey) (*Layer, error) {
	if len(recipients) == 0 {
		return nil, errors.New("no recipient key")
	}
	mt, err := layer.MediaType()
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(string(mt), MediaTypeSuffix) {
		return nil, fmt.Errorf("media type %s is already encrypted", mt)
	}
	plainDigest, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	l := &Layer{plain: layer, key: make([]byte, 32), mediaType: mt + MediaTypeSuffix}
	if _, err := io.ReadFull(rand.Reader, l.key); err != nil {
		return nil, fmt.Errorf("make layer key: %w", err)
	}

	// First pass: ciphertext digest, size and HMAC. The cipher picks the nonce.
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	bc, err := blockcipher.NewAESCTRLayerBlockCipher(256)
	if err != nil {
		return nil, err
	}
	enc, fin, err := bc.Encrypt(rc, blockcipher.LayerBlockCipherOptions{
		Private: blockcipher.PrivateLayerBlockCipherOptions{SymmetricKey: l.key},
	})
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if l.size, err = io.Copy(h, enc); err != nil {
		return nil, fmt.Errorf("read layer: %w", err)
	}
	opts, err := fin()
	if err != nil {
		return nil, err
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
	l.nonce = opts.Private.CipherOptions["nonce"]
	opts.Public.CipherType = blockcipher.AES256CTR
	opts.Private.Digest = digest.Digest(plainDigest.String())

	priv, err := json.Marshal(opts.Private)
	if err != nil {
		return nil, err
	}
	pub, err := json.Marshal(opts.Public)
	if err != nil {
		return nil, err
	}
	pems := make([][]byte, len(recipients))
	for i, r := range recipients {
		pems[i] = r.pem
	}
	wrapped, err := jwe.NewKeyWrapper().WrapKeys(&config.EncryptConfig{
		Parameters: map[string][][]byte{"pubkeys": pems},
	}, priv)
	if err != nil {
		return nil, fmt.Errorf("wrap layer key: %w", err)
	}
	l.annotations = map[string]string{
		KeysAnnotation:            base64.StdEncoding.EncodeToString(wrapped),
		PubOptsAnnotation:         base64.StdEncoding.EncodeToString(pub),
		PlaintextDigestAnnotation: plainDigest.String(),
	}
	return l, nil
}

// Annotations are the encryption annotations the layer's manifest descriptor must carry.
func (l *Layer) Annotations() map[string]string {
	a := make(map[string]string, len(l.annotations))
	for k, v := range l.annotations {
		a[k] = v
	}
	return a
}

// Digest is the ciphertext's digest.
func (l *Layer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the original layer's: image configs of encrypted images keep plaintext diff IDs.
func (l *Layer) DiffID() (v1.Hash, error) { return l.plain.DiffID() }

// Size is the ciphertext's size (the original blob's: AES-CTR keeps lengths).
func (l *Layer) Size() (int64, error) { return l.size, nil }

// MediaType is the original media type with "+encrypted".
func (l *Layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Compressed is the ciphertext, encrypted again from the original blob; a read that does
// not end in the ciphertext digest Encrypt computed fails (the original changed).
func (l *Layer) Compressed() (io.ReadCloser, error) {
	rc, err := l.plain.Compressed()
	if err != nil {
		return nil, err
	}
	bc, err := blockcipher.NewAESCTRLayerBlockCipher(256)
	if err != nil {
		rc.Close()
		return nil, err
	}
	enc, _, err := bc.Encrypt(rc, blockcipher.LayerBlockCipherOptions{
		Private: blockcipher.PrivateLayerBlockCipherOptions{
			SymmetricKey:  l.key,
			CipherOptions: map[string][]byte{"nonce": l.nonce},
		},
	})
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &verifyReader{r: enc, c: rc, h: sha256.New(), want: l.digest.Hex,
		err: fmt.Errorf("encrypt layer %s: the original blob changed since Encrypt", l.digest)}, nil
}

// Uncompressed is not available: the ciphertext has no uncompressed form.
func (l *Layer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("an encrypted layer has no uncompressed form; read Compressed")
}

// Plaintext is the descriptor of the blob an encrypted layer decrypts to: the original media
// type, the plaintext digest from PlaintextDigestAnnotation, the same size, and the
// annotations other than the encryption ones. It needs no key.
func Plaintext(desc v1.Descriptor) (v1.Descriptor, error) {
	if !strings.HasSuffix(string(desc.MediaType), MediaTypeSuffix) {
		return v1.Descriptor{}, fmt.Errorf("layer %s: %w (media type %s)", desc.Digest, ErrNotEncrypted, desc.MediaType)
	}
	h, err := v1.NewHash(desc.Annotations[PlaintextDigestAnnotation])
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("layer %s: annotation %s: %w", desc.Digest, PlaintextDigestAnnotation, err)
	}
	out := v1.Descriptor{
		MediaType: types.MediaType(strings.TrimSuffix(string(desc.MediaType), MediaTypeSuffix)),
		Size:      desc.Size,
		Digest:    h,
	}
	for k, v := range desc.Annotations {
		if strings.HasPrefix(k, "org.opencontainers.image.enc.") || k == PlaintextDigestAnnotation {
			continue
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[k] = v
	}
	return out, nil
}

// Decrypt returns the plaintext of the encrypted blob r, whose manifest descriptor is desc.
// The descriptor must carry PlaintextDigestAnnotation (Encrypt writes it), and the layer key
// must have been wrapped with the same digest. The stream fails at its end, instead of
// returning io.EOF, unless the ciphertext's HMAC holds and the plaintext has that digest: a
// consumer must not use the bytes before reading to io.EOF without error.
func Decrypt(r io.Reader, desc v1.Descriptor, key *PrivateKey) (io.Reader, error) {
	plain, err := decrypt(r, desc, key, true)
	if err != nil {
		return nil, fmt.Errorf("decrypt layer %s: %w", desc.Digest, err)
	}
	return plain, nil
}

// DecryptForeign is Decrypt for a layer encrypted by another tool, which records no
// plaintext digest: only the ciphertext's HMAC is checked. (containers/image wraps the digest
// of the blob it was given, then may compress the blob before encrypting it, so the wrapped
// digest need not be the decrypted stream's.) The caller must check the plaintext itself.
func DecryptForeign(r io.Reader, desc v1.Descriptor, key *PrivateKey) (io.Reader, error) {
	plain, err := decrypt(r, desc, key, false)
	if err != nil {
		return nil, fmt.Errorf("decrypt layer %s: %w", desc.Digest, err)
	}
	return plain, nil
}

func decrypt(r io.Reader, desc v1.Descriptor, key *PrivateKey, verify bool) (io.Reader, error) {
	if !strings.HasSuffix(string(desc.MediaType), MediaTypeSuffix) {
		return nil, fmt.Errorf("%w (media type %s)", ErrNotEncrypted, desc.MediaType)
	}
	wrapped := desc.Annotations[KeysAnnotation]
	if wrapped == "" {
		return nil, fmt.Errorf("no %s annotation (only JWE-wrapped keys are supported)", KeysAnnotation)
	}
	var privData []byte
	for _, b64 := range strings.Split(wrapped, ",") {
		j, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("annotation %s is not base64", KeysAnnotation)
		}
		privData, err = jwe.NewKeyWrapper().UnwrapKey(&config.DecryptConfig{
			Parameters: map[string][][]byte{"privkeys": {key.pem}, "privkeys-passwords": {nil}},
		}, j)
		if err == nil {
			break
		}
	}
	if privData == nil {
		return nil, ErrWrongKey
	}
	var priv blockcipher.PrivateLayerBlockCipherOptions
	if err := json.Unmarshal(privData, &priv); err != nil {
		return nil, fmt.Errorf("parse wrapped layer options: %w", err)
	}
	pubData, err := base64.StdEncoding.DecodeString(desc.Annotations[PubOptsAnnotation])
	if err != nil {
		return nil, fmt.Errorf("annotation %s is not base64", PubOptsAnnotation)
	}
	var pub blockcipher.PublicLayerBlockCipherOptions
	if err := json.Unmarshal(pubData, &pub); err != nil {
		return nil, fmt.Errorf("parse annotation %s: %w", PubOptsAnnotation, err)
	}
	if pub.CipherType != blockcipher.AES256CTR {
		return nil, fmt.Errorf("cipher %q is not supported (want %s)", pub.CipherType, blockcipher.AES256CTR)
	}
	var want v1.Hash
	if verify {
		a, ok := desc.Annotations[PlaintextDigestAnnotation]
		if !ok {
			return nil, fmt.Errorf("no %s annotation: the plaintext cannot be checked (not encrypted by crwrap)", PlaintextDigestAnnotation)
		}
		if want, err = v1.NewHash(a); err != nil || want.Algorithm != "sha256" {
			return nil, fmt.Errorf("annotation %s is not a sha256 digest (%q)", PlaintextDigestAnnotation, a)
		}
		if string(priv.Digest) != a {
			return nil, fmt.Errorf("%w: annotation %s is %s, the wrapped key's is %q", ErrDigestMismatch, PlaintextDigestAnnotation, a, priv.Digest)
		}
	}
	bc, err := blockcipher.NewAESCTRLayerBlockCipher(256)
	if err != nil {
		return nil, err
	}
	dec, _, err := bc.Decrypt(r, blockcipher.LayerBlockCipherOptions{Public: pub, Private: priv})
	if err != nil {
		return nil, err
	}
	if !verify {
		return &verifyReader{r: dec}, nil
	}
	return &verifyReader{r: dec, h: sha256.New(), want: want.Hex,
		err: fmt.Errorf("%w %s", ErrDigestMismatch, want)}, nil
}

// verifyReader hashes what it reads and, at the end, returns err instead of io.EOF unless
// the hash is want (with no hash, it only names ocicrypt's HMAC failure plainly).
type verifyReader struct {
	r    io.Reader
	c    io.Closer
	h    hash.Hash
	want string
	err  error
	done error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.done != nil {
		return 0, v.done
	}
	n, err := v.r.Read(p)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	if err == io.EOF {
		if v.h != nil && fmt.Sprintf("%x", v.h.Sum(nil)) != v.want {
			v.done = v.err
			return n, v.done
		}
		v.done = io.EOF
	} else if err != nil {
		if strings.HasPrefix(err.Error(), "could not properly decrypt byte stream") {
			// ocicrypt's HMAC check, which prints raw bytes: say it plainly.
			err = fmt.Errorf("%w: the ciphertext fails its HMAC (blob tampered with or truncated)", ErrDigestMismatch)
		}
		v.done = err
	}
	return n, err
}

func (v *verifyReader) Close() error {
	if v.c != nil {
		return v.c.Close()
	}
	return nil
}
