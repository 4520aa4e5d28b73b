package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Key returns the object key of a scene's code image in a campaign:
// NAME(campaign) "/" NAME(scene) "." NAME(ext), where NAME is the reversible
// encoding described in the package documentation. ext is the image's file
// extension as imagetype.Ext returns it ("jpg" or "png"); it is encoded the
// same way, so any string gives a safe key. The key has no store prefix.
//
// Key is deterministic, human-readable for plain scenes (Key("spring",
// "sku000123", "jpg") is "spring/sku000123.jpg"), and distinct for distinct
// scenes even on case-insensitive file systems. campaign and scene must not
// be empty: a key with an empty name is refused by every Store.
//
// A scene (or a path of interfaces A and C) whose encoded file name, with
// its extension, would pass MaxSegmentLen (255 bytes, the file-name limit
// of common file systems) gets the digest form instead:
// NAME(campaign) "/_sha256/" HEX "." NAME(ext), HEX being the lowercase
// SHA-256 of the scene. A readable key has one "/", a digest key two, so
// the two forms never collide. Either way a key is at most 512 bytes (a
// campaign name encodes to at most 256), which leaves room for a store
// prefix of 512 bytes within S3's limit of 1024.
func Key(campaign, scene, ext string) string {
	var b strings.Builder
	b.Grow(len(campaign) + len(scene) + len(ext) + 8)
	encodeName(&b, campaign)
	b.WriteByte('/')
	dir := b.Len()
	encodeName(&b, scene)
	if ext != "" {
		b.WriteByte('.')
		encodeName(&b, ext)
	}
	if b.Len()-dir <= MaxSegmentLen {
		return b.String()
	}
	key := b.String()[:dir]
	b.Reset()
	b.WriteString(key)
	b.WriteString(DigestDir)
	b.WriteByte('/')
	sum := sha256.Sum256([]byte(scene))
	b.WriteString(hex.EncodeToString(sum[:]))
	if ext != "" {
		b.WriteByte('.')
		encodeName(&b, ext)
	}
	return b.String()
}

// DigestDir is the folder, inside a campaign's, of the keys whose scene is
// too long to stay readable (see Key).
const DigestDir = "_sha256"

// DecodeKey is the inverse of Key: it returns the campaign, scene and
// extension a key was made from. It accepts only keys exactly as Key writes
// them (no store prefix), so a key decodes to one triple and back. A digest
// key (see Key) does not hold its scene and is refused.
func DecodeKey(key string) (campaign, scene, ext string, err error) {
	c, rest, ok := strings.Cut(key, "/")
	if !ok {
		return "", "", "", fmt.Errorf("decode key %q: want CAMPAIGN/SCENE.EXT", key)
	}
	s, e, _ := strings.Cut(rest, ".")
	if campaign, err = decodeName(c); err != nil {
		return "", "", "", fmt.Errorf("decode key %q: campaign: %w", key, err)
	}
	if scene, err = decodeName(s); err != nil {
		return "", "", "", fmt.Errorf("decode key %q: scene: %w", key, err)
	}
	if ext, err = decodeName(e); err != nil {
		return "", "", "", fmt.Errorf("decode key %q: extension: %w", key, err)
	}
	if campaign == "" || scene == "" {
		return "", "", "", fmt.Errorf("decode key %q: empty name", key)
	}
	if Key(campaign, scene, ext) != key {
		return "", "", "", fmt.Errorf("decode key %q: not written by Key (want %q)", key, Key(campaign, scene, ext))
	}
	return campaign, scene, ext, nil
}

const hexDigits = "0123456789abcdef"

// encodeName writes s in the key alphabet: a-z 0-9 - _ stay, an uppercase
// letter becomes "!" and its lowercase, any other byte "(hh)". A name that
// Windows reserves (con, nul, com1, ...) gets its first letter escaped.
func encodeName(b *strings.Builder, s string) {
	if reservedName(s) {
		// Only plain lowercase names can be reserved once encoded: any
		// other byte would have been escaped already.
		writeHex(b, s[0])
		s = s[1:]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte('!')
			b.WriteByte(c + 'a' - 'A')
		default:
			writeHex(b, c)
		}
	}
}

func writeHex(b *strings.Builder, c byte) {
	b.WriteByte('(')
	b.WriteByte(hexDigits[c>>4])
	b.WriteByte(hexDigits[c&0xf])
	b.WriteByte(')')
}

var errBadName = errors.New("bad escape")

// decodeName reverses encodeName. It does not check that the encoding is
// the canonical one; DecodeKey does, by encoding again.
func decodeName(s string) (string, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			out = append(out, c)
		case c == '!':
			if i+1 >= len(s) || s[i+1] < 'a' || s[i+1] > 'z' {
				return "", fmt.Errorf("%w at byte %d: \"!\" must precede a-z", errBadName, i+1)
			}
			out = append(out, s[i+1]-'a'+'A')
			i++
		case c == '(':
			if i+3 >= len(s) || s[i+3] != ')' {
				return "", fmt.Errorf("%w at byte %d: want (hh)", errBadName, i+1)
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("%w at byte %d: want lowercase hex", errBadName, i+1)
			}
			out = append(out, byte(hi<<4|lo))
			i += 3
		default:
			return "", fmt.Errorf("%w at byte %d: %q is not in the key alphabet", errBadName, i+1, c)
		}
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// reservedName reports whether Windows reserves name (lowercase, no dot)
// as a device, with or without an extension.
func reservedName(name string) bool {
	switch name {
	case "con", "prn", "aux", "nul":
		return true
	}
	if len(name) == 4 && (strings.HasPrefix(name, "com") || strings.HasPrefix(name, "lpt")) {
		return name[3] >= '0' && name[3] <= '9'
	}
	return false
}
