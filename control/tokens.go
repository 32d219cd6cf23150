package control

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// token is one accepted bearer token: its name in the audit log and its SHA-256.
type token struct {
	name string
	sum  [sha256.Size]byte
}

// readTokens reads a tokens file: one token a line, "NAME TOKEN" to give it a name in the
// audit log (else its hash prefix names it), '#' comments. Several lines let a new token
// be rolled out before the old one is removed.
func readTokens(path string) ([]token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var tokens []token
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		secret := fields[len(fields)-1]
		if len(fields) > 2 || len(secret) < 16 {
			return nil, fmt.Errorf("%s line %d: want TOKEN or NAME TOKEN, the token at least 16 characters", path, n)
		}
		t := token{sum: sha256.Sum256([]byte(secret))}
		t.name = "token:" + hex.EncodeToString(t.sum[:4])
		if len(fields) == 2 {
			t.name = fields[0]
		}
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, errors.New(path + ": no token")
	}
	return tokens, nil
}

// tokenFile is the tokens file, read again when it changes, so tokens rotate without a
// restart. A file that became unreadable keeps the tokens last read.
type tokenFile struct {
	path   string
	log    *zap.Logger
	mu     sync.Mutex
	mtime  time.Time
	size   int64
	tokens []token
}

func (f *tokenFile) current() []token {
	f.mu.Lock()
	defer f.mu.Unlock()
	// A file gone, unreadable or broken fails closed: an operator who removed it to shut
	// the API off, or broke it while revoking a token, must not keep the old tokens valid.
	info, err := os.Stat(f.path)
	if err != nil {
		if f.size != -1 {
			f.log.Error("control API: tokens file unusable; every call is refused until it is fixed", zap.Error(err))
		}
		f.tokens, f.mtime, f.size = nil, time.Time{}, -1
		return nil
	}
	if !info.ModTime().Equal(f.mtime) || info.Size() != f.size {
		tokens, err := readTokens(f.path)
		if err != nil {
			f.log.Error("control API: tokens file unusable; every call is refused until it is fixed", zap.Error(err))
		}
		f.tokens, f.mtime, f.size = tokens, info.ModTime(), info.Size()
	}
	return f.tokens
}

// check returns the name of the token matching secret. Every token is compared, in
// constant time, so the time taken tells nothing about which one came close.
func (f *tokenFile) check(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	name, found := "", 0
	for _, t := range f.current() {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			name, found = t.name, 1
		}
	}
	return name, found == 1
}
