package bind9

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/internal/run"
)

// RNDC runs one rndc command against named and returns what rndc printed. It is the seam
// between the backend's logic and named's control channel, so tests can fake it.
type RNDC interface {
	Run(ctx context.Context, args ...string) (string, error)
}

// RNDCError is a failed rndc command. Output is what rndc said, which is where the reason
// is ("not found", "already exists", "connection refused", a bad key ...).
type RNDCError struct {
	Args   []string
	Output string
	Err    error
}

func (e *RNDCError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("rndc %s: %v", strings.Join(e.Args, " "), e.Err)
	}
	return fmt.Sprintf("rndc %s: %v: %s", strings.Join(e.Args, " "), e.Err, e.Output)
}

func (e *RNDCError) Unwrap() error { return e.Err }

// said reports whether err is an rndc failure whose output contains text.
func said(err error, text string) bool {
	var re *RNDCError
	return errors.As(err, &re) && strings.Contains(re.Output, text)
}

// Exec runs the rndc program directly (never through a shell), with the control-channel
// flags of the configuration before the command's own arguments.
type Exec struct {
	Binary  string
	Flags   []string
	Timeout time.Duration
}

// NewExec builds the runner for cfg; it finds rndc on PATH or in the sbin directories,
// where Debian installs it and where an ordinary user's PATH does not look.
func NewExec(cfg Config) (*Exec, error) {
	binary, err := findBinary(cfg.RNDCBinary)
	if err != nil {
		return nil, err
	}
	var flags []string
	if cfg.RNDCConfigFile != "" {
		flags = append(flags, "-c", cfg.RNDCConfigFile)
	}
	if cfg.RNDCKeyFile != "" {
		flags = append(flags, "-k", cfg.RNDCKeyFile)
	}
	flags = append(flags, "-s", cfg.RNDCHost, "-p", strconv.Itoa(cfg.RNDCPort))
	return &Exec{Binary: binary, Flags: flags, Timeout: cfg.RNDCTimeout}, nil
}

// newRNDC picks how commands reach named: the control channel itself when rndc_channel
// is on and the key is known, the rndc program otherwise (rndc_config_file may name
// servers, ports and keys of its own, which only rndc reads).
func newRNDC(cfg Config) (RNDC, error) {
	keyFile := cfg.RNDCKeyFile
	if keyFile == "" && cfg.RNDCConfigFile == "" {
		if _, err := os.Stat(DefaultRNDCKeyFile); err == nil {
			keyFile = DefaultRNDCKeyFile
		}
	}
	if !cfg.RNDCChannel || cfg.RNDCConfigFile != "" || keyFile == "" {
		return NewExec(cfg)
	}
	key, err := ReadKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("rndc_key_file: %w (or set rndc_channel = false to run rndc)", err)
	}
	addr := net.JoinHostPort(cfg.RNDCHost, strconv.Itoa(cfg.RNDCPort))
	ch := &Channel{Addr: addr, Key: key, Timeout: cfg.RNDCTimeout, KeyFile: keyFile}
	ch.key() // notes the file's time
	return ch, nil
}

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("rndc_binary: %q not found on PATH or in /usr/sbin", name)
}

// Run implements RNDC.
func (r *Exec) Run(ctx context.Context, args ...string) (string, error) {
	text, err := run.Command(ctx, r.Timeout, slices.Concat([]string{r.Binary}, r.Flags, args))
	if errors.Is(err, run.ErrTimedOut) {
		err = fmt.Errorf("no answer within rndc_timeout: %w", err)
	}
	if err != nil {
		return text, &RNDCError{Args: args, Output: text, Err: err}
	}
	return text, nil
}

// showzoneFile finds the file clause in `rndc showzone` output, e.g.
// zone "example.com" { type primary; file "/var/lib/bind/dnsagent/example.com.zone"; };
var showzoneFile = regexp.MustCompile(`\bfile\s+"((?:[^"\\]|\\.)*)"`)

// fileOf returns the zone file named in showzone output, unescaped; "" when there is none
// (a secondary without a file, say).
func fileOf(showzone string) string {
	m := showzoneFile.FindStringSubmatch(showzone)
	if m == nil {
		return ""
	}
	var b strings.Builder
	escaped := false
	for _, c := range m[1] {
		if c == '\\' && !escaped {
			escaped = true
			continue
		}
		escaped = false
		b.WriteRune(c)
	}
	return b.String()
}
