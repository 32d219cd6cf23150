package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// owner says which catalog created a member zone, under which unique label. Only the
// owning catalog ever deletes the zone, so a zone created by an opcode-14 CREATE (which
// has no owner) is never deleted by a catalog change.
type owner struct {
	Catalog string `json:"catalog"`
	Label   string `json:"label"`
}

// stateVersion is the format of the state file.
const stateVersion = 1

type stateFile struct {
	Version int              `json:"version"`
	Zones   map[string]owner `json:"zones"` // member zone -> owner
}

// loadState reads the ownership records; a missing file is an empty record.
func loadState(path string) (map[string]owner, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]owner{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog state %s: %w", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("catalog state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("catalog state %s: format version %d is not %d", path, st.Version, stateVersion)
	}
	if st.Zones == nil {
		st.Zones = map[string]owner{}
	}
	return st.Zones, nil
}

// saveState writes the ownership records atomically: a temp file in the same directory,
// synced, renamed over the old one, and the directory synced, so a crash leaves either
// the old record or the new one.
func saveState(path string, zones map[string]owner) error {
	data, err := json.MarshalIndent(stateFile{Version: stateVersion, Zones: zones}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("catalog state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("catalog state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() //nolint:errcheck // the rename is done; a failed directory sync only weakens durability
		d.Close()
	}
	return nil
}

// CheckStateFile makes sure the state file can be kept at path: its directory exists (it
// is created if missing) and is writable, and an existing file is readable. check-config
// and the start-up run it, so a bad path fails before the first catalog is processed.
func CheckStateFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	probe, err := os.CreateTemp(dir, ".dnsagent-write-test-*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	_, err = loadState(path)
	return err
}
