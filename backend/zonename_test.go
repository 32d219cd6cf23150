package backend

import (
	"strings"
	"testing"
)

// Every backend checks and folds a zone name the same way: one zone, one name; a bad
// name refused with the backend, the operation and the reason.
func TestCheckZone(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"Example.COM.", "example.com.", ""},
		{"example.com.", "example.com.", ""},
		{"example.com", "", "file backend: create: zone name \"example.com\": not fully qualified"},
		{`\.\./etc.`, "", "file backend: create: zone name"},
		{"-rf.example.", "", "may not start or end with '-'"},
		{".", "", "the root zone"},
	} {
		got, err := CheckZone("file", "create", tt.in)
		if got != tt.want || (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("CheckZone(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}
