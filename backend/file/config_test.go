package file

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dnsagent/dnsagent/config"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		line    string
		want    []string
		wantErr bool
	}{
		{line: "", want: nil},
		{line: "   ", want: nil},
		{line: "knotc zone-reload {zone}", want: []string{"knotc", "zone-reload", "{zone}"}},
		{line: "  nsd-control\treload   {zone} ", want: []string{"nsd-control", "reload", "{zone}"}},
		{line: `sh -c 'echo $1; exit 1' sh {zone}`, want: []string{"sh", "-c", "echo $1; exit 1", "sh", "{zone}"}},
		{line: `a "b c" d`, want: []string{"a", "b c", "d"}},
		{line: `a "say \"hi\" \\ \n"`, want: []string{"a", `say "hi" \ \n`}},
		{line: `a 'it''s' "x"'y'z`, want: []string{"a", "its", "xyz"}},
		{line: `a '' ""`, want: []string{"a", "", ""}},
		{line: `a\ b c\'d`, want: []string{"a b", "c'd"}},
		{line: `'single \ stays'`, want: []string{`single \ stays`}},
		{line: `--file={file}`, want: []string{"--file={file}"}},
		{line: `a 'open`, wantErr: true},
		{line: `a "open`, wantErr: true},
		{line: `a \`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := splitCommand(tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("splitCommand(%q) error = %v, wantErr %v", tt.line, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("splitCommand(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestExpandArgs(t *testing.T) {
	tests := []struct {
		argv []string
		want []string
	}{
		{[]string{"knotc", "zone-reload", "{zone}"}, []string{"knotc", "zone-reload", "example.com"}},
		{[]string{"check", "--file={file}", "{zone}.{zone}"}, []string{"check", "--file=/z/example.com.zone", "example.com.example.com"}},
		{[]string{"literal", "{other}", "{ZONE}"}, []string{"literal", "{other}", "{ZONE}"}},
	}
	for _, tt := range tests {
		got := expandArgs(tt.argv, "example.com.", "/z/example.com.zone")
		if !slices.Equal(got, tt.want) {
			t.Errorf("expandArgs(%q) = %q, want %q", tt.argv, got, tt.want)
		}
	}
}

func TestConfigFrom(t *testing.T) {
	f, err := config.Parse(`
[agent:file]
zone_file_path = /srv/zones
file_mode = 0640
file_group = 0
reload_command = knotc zone-reload {zone}
delete_command = sh -c 'knotc zone-purge "$1"' sh {zone}
command_timeout = 2.5
`)
	if err != nil {
		t.Fatal(err)
	}
	got := ConfigFrom(f.Section("agent:file"))
	if err := f.Err(); err != nil {
		t.Fatalf("config errors: %v", err)
	}
	want := Config{
		ZoneFilePath:   "/srv/zones",
		FileMode:       0o640,
		FileGroup:      "0",
		ReloadCommand:  []string{"knotc", "zone-reload", "{zone}"},
		DeleteCommand:  []string{"sh", "-c", `knotc zone-purge "$1"`, "sh", "{zone}"},
		CommandTimeout: 2500 * time.Millisecond,
	}
	if got.ZoneFilePath != want.ZoneFilePath || got.FileMode != want.FileMode || got.FileGroup != want.FileGroup ||
		!slices.Equal(got.ReloadCommand, want.ReloadCommand) || !slices.Equal(got.DeleteCommand, want.DeleteCommand) ||
		got.CommandTimeout != want.CommandTimeout {
		t.Fatalf("ConfigFrom = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestConfigFromDefaults(t *testing.T) {
	f, err := config.Parse("[agent:file]\n")
	if err != nil {
		t.Fatal(err)
	}
	got := ConfigFrom(f.Section("agent:file"))
	if got.ZoneFilePath != DefaultZoneFilePath || got.FileMode != DefaultFileMode ||
		got.CommandTimeout != DefaultCommandTimeout || got.ReloadCommand != nil || got.FileGroup != "" {
		t.Fatalf("defaults = %+v", got)
	}
}

func TestConfigFromBadCommand(t *testing.T) {
	f, err := config.Parse("[agent:file]\nreload_command = knotc zone-reload '{zone}\n")
	if err != nil {
		t.Fatal(err)
	}
	ConfigFrom(f.Section("agent:file"))
	err = f.Err()
	if err == nil || !strings.Contains(err.Error(), "reload_command") || !strings.Contains(err.Error(), "unterminated") {
		t.Fatalf("config error = %v, want an unterminated quote in reload_command", err)
	}
}

func TestValidate(t *testing.T) {
	good := Config{ZoneFilePath: "/z", FileMode: 0o644, CommandTimeout: time.Second}
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"good", func(*Config) {}, ""},
		{"numeric group", func(c *Config) { c.FileGroup = strconv.Itoa(os.Getgid()) }, ""},
		{"empty path", func(c *Config) { c.ZoneFilePath = "" }, "zone_file_path"},
		{"setuid mode", func(c *Config) { c.FileMode = os.ModeSetuid | 0o644 }, "file_mode"},
		{"unknown group", func(c *Config) { c.FileGroup = "no-such-group-dnsagent" }, "file_group"},
		{"negative gid", func(c *Config) { c.FileGroup = "-3" }, "file_group"},
		{"no timeout", func(c *Config) { c.ReloadCommand = []string{"true"}; c.CommandTimeout = 0 }, "command_timeout"},
		{"empty program", func(c *Config) { c.DeleteCommand = []string{"", "x"} }, "delete_command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate = %v, want an error about %s", err, tt.wantErr)
			}
		})
	}
}
