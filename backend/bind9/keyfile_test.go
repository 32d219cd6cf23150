package bind9_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/dnsagent/dnsagent/backend/bind9"
)

// A base64 secret may hold "//" (about one random rndc key in a hundred): that is no
// comment inside a quoted string, and the key is read whole. Comments around it are
// still skipped.
func TestReadKeyFileSecretWithSlashes(t *testing.T) {
	secret := []byte("\xff\xff\xfc" + "0123456789abcdef0123456789ab\xff\xff\xfc") // "///8" twice in base64
	b64 := base64.StdEncoding.EncodeToString(secret)
	text := "# rndc-confgen -a\n// key \"old\" { algorithm hmac-md5; secret \"AAAA\"; };\n/* a block */\n" +
		"key \"rndc-key\" {\n\talgorithm hmac-sha256; // the default\n\tsecret \"" + b64 + "\";\n};\n"
	path := filepath.Join(t.TempDir(), "rndc.key")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := bind9.ReadKeyFile(path)
	if err != nil {
		t.Fatalf("key file with secret %s: %v", b64, err)
	}
	if k.Algorithm != "hmac-sha256" || !bytes.Equal(k.Secret, secret) {
		t.Errorf("read %s %x, want hmac-sha256 %x", k.Algorithm, k.Secret, secret)
	}
}
