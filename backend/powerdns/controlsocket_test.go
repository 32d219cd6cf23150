package powerdns

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/internal/dnstest"
)

// fakeControlSocket listens where pdns_server would and answers each command line with
// answer(line); it returns the socket's path and the lines it read.
func fakeControlSocket(t *testing.T, answer func(line string) (string, bool)) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), controlSocketName)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	dnstest.Accept(t, l, func(conn net.Conn) {
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return
		}
		lines <- line
		reply, ok := answer(line)
		if !ok { // never answers: hold the connection until the client gives up
			conn.Read(make([]byte, 1)) //nolint:errcheck
			return
		}
		conn.Write([]byte(reply)) //nolint:errcheck
	})
	return path, lines
}

func TestControlSocket(t *testing.T) {
	var ran [][]string
	next := func(_ context.Context, argv []string) (string, error) { ran = append(ran, argv); return "", nil }
	path, lines := fakeControlSocket(t, func(line string) (string, bool) {
		switch {
		case strings.HasPrefix(line, "stall"):
			return "", false
		case strings.HasPrefix(line, "bogus"):
			return "Unknown command: 'bogus'\n", true
		}
		return "Ok\n", true
	})
	c := controlSocket{path: path, next: next}

	// The command line pdns_control would send: its arguments, without --socket-dir.
	out, err := c.run(t.Context(), []string{"pdns_control", "--socket-dir=/run/pdns", "purge", "a.example$", "b.example$"})
	if err != nil || out != "Ok" {
		t.Fatalf("purge: %q %v, want Ok", out, err)
	}
	if line := <-lines; line != "purge a.example$ b.example$\n" {
		t.Errorf("sent %q, want the purge line", line)
	}
	if _, err := c.run(t.Context(), []string{"pdns_control", "bogus"}); err == nil || !strings.Contains(err.Error(), "Unknown command") ||
		!strings.Contains(err.Error(), path) {
		t.Errorf("unknown command: %v, want pdns_server's answer and the socket's path", err)
	}
	<-lines

	// A pdns_server that never answers holds the change only until the context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.run(ctx, []string{"pdns_control", "stall"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("no answer: %v after %v, want the deadline within 5 s", err, time.Since(start))
	}

	// pdnsutil is still a command.
	if _, err := c.run(t.Context(), []string{"pdnsutil", "rectify-zone", "a.example"}); err != nil || len(ran) != 1 || ran[0][0] != "pdnsutil" {
		t.Errorf("pdnsutil: %v, ran %v, want it run as a command", err, ran)
	}

	gone := controlSocket{path: filepath.Join(t.TempDir(), controlSocketName), next: next}
	if _, err := gone.run(t.Context(), []string{"pdns_control", "rping"}); err == nil || !strings.Contains(err.Error(), gone.path) {
		t.Errorf("no pdns_server: %v, want an error naming the socket", err)
	}
}

// The agent speaks to the socket itself only when pdns_control is left as it is and the
// socket's directory is known; any other pdns_control command is run.
func TestDirectControl(t *testing.T) {
	for _, c := range []struct {
		command []string
		dir     string
		enabled bool
		want    bool
	}{
		{[]string{"pdns_control"}, "/run/pdns", true, true},
		{[]string{"pdns_control"}, "", true, false},
		{[]string{"/usr/bin/pdns_control"}, "/run/pdns", true, false},
		{[]string{"docker", "exec", "pdns", "pdns_control"}, "/run/pdns", true, false},
		{[]string{"pdns_control"}, "/run/pdns", false, false},
	} {
		cfg := testConfig()
		cfg.PDNSControl, cfg.PDNSSocketDir, cfg.PDNSControlEnabled = c.command, c.dir, c.enabled
		if got := directControl(cfg); got != c.want {
			t.Errorf("pdns_control %q, pdns_socket_dir %q, enabled %v: direct %v, want %v", c.command, c.dir, c.enabled, got, c.want)
		}
	}
}
