package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateRoundTripLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "catalogs.json")
	if st, err := loadState(path); err != nil || len(st) != 0 {
		t.Fatalf("missing file: %v, %v; want an empty record", st, err)
	}
	want := map[string]owner{"a.test.": {"cat.test.", "x"}, "b.test.": {"cat.test.", "y"}}
	if err := saveState(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil || len(got) != 2 || got["a.test."] != want["a.test."] {
		t.Fatalf("loaded %v, %v; want %v", got, err, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the state file", len(entries))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}

func TestCheckStateFile(t *testing.T) {
	dir := t.TempDir()
	if err := CheckStateFile(filepath.Join(dir, "new", "sub", "catalogs.json")); err != nil {
		t.Errorf("a missing directory must be created: %v", err)
	}
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o644)
	if err := CheckStateFile(filepath.Join(file, "catalogs.json")); err == nil {
		t.Error("a directory that cannot exist: no error")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o644)
	if err := CheckStateFile(bad); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("an unreadable state file: %v, want an error naming it", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Zones: []string{"cat.test."}, StateFile: "/x/catalogs.json", MaxRemoval: 0.5}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	for name, c := range map[string]Config{
		"bad name":     {Zones: []string{"cat test."}, StateFile: "x", MaxRemoval: 0.5},
		"twice":        {Zones: []string{"cat.test.", "cat.test."}, StateFile: "x", MaxRemoval: 0.5},
		"no state":     {Zones: []string{"cat.test."}, MaxRemoval: 0.5},
		"share zero":   {MaxRemoval: 0},
		"share over 1": {MaxRemoval: 1.5},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
