package zonediff_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/backendtest"
	"github.com/dnsagent/dnsagent/backend/file"
	"github.com/dnsagent/dnsagent/backend/zonediff"
)

const zone = "example.com."

// setup creates a 200-record zone at serial 1 through a fresh index over a file backend.
func setup(t *testing.T) (*file.Backend, *zonediff.Index, string, string) {
	t.Helper()
	b, idx, zoneFile, idxDir := fileAndIndex(t)
	if res, err := idx.Full(t.Context(), b, zone, false, 0, version(1)); err != nil || res.Apply != "create" {
		t.Fatalf("create: %+v %v", res, err)
	}
	return b, idx, zoneFile, idxDir
}

// fileAndIndex is a file backend and an index, each over a new directory, and the path
// of the zone's file.
func fileAndIndex(t *testing.T) (*file.Backend, *zonediff.Index, string, string) {
	t.Helper()
	zonesDir, idxDir := t.TempDir(), t.TempDir()
	b, err := file.New(file.Config{ZoneFilePath: zonesDir, FileMode: 0o644, CommandTimeout: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := zonediff.Open(idxDir, zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	return b, idx, filepath.Join(zonesDir, "example.com.zone"), idxDir
}

// zoneAt is backendtest.Zone with n records at serial, streamed in batches of batch.
func zoneAt(serial uint32, n, batch int) backend.Source {
	rrs := backendtest.Zone(zone, 1, n)
	rrs[0].(*dns.SOA).Serial = serial
	return backendtest.Stream(backendtest.Batches(rrs, batch)...)
}

// version is the zone at serial: 200 records, and at serial n ≥ 2 one more TXT per step.
func version(serial uint32) backend.Source {
	rrs := backendtest.Zone(zone, 1, 200)
	rrs[0].(*dns.SOA).Serial = serial
	for i := uint32(2); i <= serial; i++ {
		rrs = append(rrs, &dns.TXT{Hdr: dns.RR_Header{Name: fmt.Sprintf("v%d.%s", i, zone), Rrtype: dns.TypeTXT,
			Class: dns.ClassINET, Ttl: 60}, Txt: []string{"added"}})
	}
	return backendtest.Stream(backendtest.Batches(rrs, 50)...)
}

func wantLines(t *testing.T, path string, want int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(raw), "\n") - 1; got != want { // the comment line
		t.Fatalf("%s holds %d records, want %d", path, got, want)
	}
}

func TestDiffThenReplaceWhenTheIndexCannotBeTrusted(t *testing.T) {
	tests := []struct {
		name   string
		spoil  func(t *testing.T, zoneFile, idxDir string)
		reason string
	}{
		{"Trusted", func(*testing.T, string, string) {}, ""},
		{"LineRemovedBehindOurBack", func(t *testing.T, zoneFile, _ string) {
			raw, _ := os.ReadFile(zoneFile)
			lines := strings.Split(string(raw), "\n")
			lines = append(lines[:10], lines[11:]...)
			if err := os.WriteFile(zoneFile, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "changed behind the agent's back"},
		{"IndexMissing", func(t *testing.T, _, idxDir string) {
			removeAll(t, idxDir)
		}, "no index"},
		{"IndexCutShort", func(t *testing.T, _, idxDir string) {
			for _, p := range indexFiles(t, idxDir) {
				if err := os.Truncate(p, 100); err != nil {
					t.Fatal(err)
				}
			}
		}, "index unreadable"},
		{"IndexTableAltered", func(t *testing.T, _, idxDir string) {
			for _, p := range indexFiles(t, idxDir) {
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				info, _ := f.Stat()
				f.WriteAt([]byte{0xff, 0xfe}, info.Size()-300) //nolint:errcheck // checked by the outcome
				f.Close()
			}
		}, "index unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, idx, zoneFile, idxDir := setup(t)
			tt.spoil(t, zoneFile, idxDir)
			res, err := idx.Full(t.Context(), b, zone, true, 1, version(2))
			if err != nil {
				t.Fatal(err)
			}
			if tt.reason == "" {
				if res.Apply != "diff" || res.Added != 1 || res.Deleted != 0 {
					t.Fatalf("got %+v, want a diff adding one record", res)
				}
			} else if res.Apply != "replace" || !strings.Contains(res.Reason, tt.reason) {
				t.Fatalf("got %+v, want a replace because %q", res, tt.reason)
			}
			wantLines(t, zoneFile, 1+1+200+1)
			// Whatever happened, the new index is trusted again.
			if res, err := idx.Full(t.Context(), b, zone, true, 2, version(3)); err != nil || res.Apply != "diff" {
				t.Fatalf("the next version: %+v, %v; want a diff", res, err)
			}
			wantLines(t, zoneFile, 1+1+200+2)
		})
	}
}

func TestSerialMismatchReplaces(t *testing.T) {
	b, idx, zoneFile, _ := setup(t)
	res, err := idx.Full(t.Context(), b, zone, true, 7, version(8))
	if err != nil || res.Apply != "replace" || !strings.Contains(res.Reason, "serial 1, the backend holds 7") {
		t.Fatalf("got %+v, %v; want a replace naming both serials", res, err)
	}
	wantLines(t, zoneFile, 1+1+200+7)
}

func TestFailedTransferChangesNothing(t *testing.T) {
	b, idx, zoneFile, _ := setup(t)
	before, _ := os.ReadFile(zoneFile)
	cut := errors.New("connection reset")
	rrs := backendtest.Zone(zone, 1, 100)
	rrs[0].(*dns.SOA).Serial = 2
	if _, err := idx.Full(t.Context(), b, zone, true, 1, backendtest.FailingStream(cut, rrs)); !errors.Is(err, cut) {
		t.Fatalf("Full with a failing source: %v, want the source's error", err)
	}
	if after, _ := os.ReadFile(zoneFile); string(after) != string(before) {
		t.Fatal("the zone file changed")
	}
	if res, err := idx.Full(t.Context(), b, zone, true, 1, version(2)); err != nil || res.Apply != "diff" {
		t.Fatalf("after the failure: %+v, %v; want a diff from the index kept", res, err)
	}
}

func TestDropForgets(t *testing.T) {
	b, idx, _, _ := setup(t)
	idx.Drop(zone)
	if res, _ := idx.Full(t.Context(), b, zone, true, 1, version(2)); res.Apply != "replace" {
		t.Fatalf("after Drop: %+v, want a replace", res)
	}
}

func TestTempFilesSweptAtOpen(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, ".tmp-123")
	if err := os.WriteFile(left, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := zonediff.Open(dir, 0.3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("temp file left: %v", err)
	}
}

func indexFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(paths) == 0 {
		t.Fatal("no index file")
	}
	return paths
}

func removeAll(t *testing.T, dir string) {
	for _, p := range indexFiles(t, dir) {
		os.Remove(p)
	}
}

// A difference over diff_max_ratio is a replace from the index files: the records the held
// version lacks from the new index, the others from the held one. The zone file then
// holds the records a create of the same version writes, and the index it leaves
// describes the new version (the next change is a diff of one record).
func TestReplaceFromTheIndexFiles(t *testing.T) {
	zonesDir := t.TempDir()
	b, err := file.New(file.Config{ZoneFilePath: zonesDir, FileMode: 0o644, CommandTimeout: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	idxDir := t.TempDir()
	idx, err := zonediff.Open(idxDir, 0) // every difference is over the ratio
	if err != nil {
		t.Fatal(err)
	}
	records := func(src backend.Source) (rrs []dns.RR) {
		for {
			batch, err := src.Next()
			if err != nil {
				return rrs
			}
			rrs = append(rrs, batch...)
		}
	}
	// The held version has a record twice: its index too.
	rrs := records(version(1))
	rrs = append(rrs, dns.Copy(rrs[7]))
	if _, err := idx.Full(t.Context(), b, zone, false, 0, backendtest.Stream(backendtest.Batches(rrs, 50)...)); err != nil {
		t.Fatal(err)
	}
	// Version 3 less one held record, one record repeated (one RR, RFC 2181 §5) and one
	// added twice.
	rrs = slices.Delete(records(version(3)), 10, 11)
	rrs = append(rrs, dns.Copy(rrs[5]), dns.Copy(rrs[len(rrs)-1]))
	res, err := idx.Full(t.Context(), b, zone, true, 1, backendtest.Stream(backendtest.Batches(rrs, 50)...))
	if err != nil || res.Apply != "replace" {
		t.Fatalf("got %+v, %v; want a replace", res, err)
	}
	got := sortedLines(t, filepath.Join(zonesDir, "example.com.zone"))

	freshDir := t.TempDir()
	fresh, err := file.New(file.Config{ZoneFilePath: freshDir, FileMode: 0o644, CommandTimeout: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Create(t.Context(), zone, backendtest.Stream(backendtest.Batches(rrs, 50)...)); err != nil {
		t.Fatal(err)
	}
	if want := sortedLines(t, filepath.Join(freshDir, "example.com.zone")); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the replaced zone file holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	idx, err = zonediff.Open(idxDir, zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := idx.Full(t.Context(), b, zone, true, 3, version(4)); err != nil || res.Apply != "diff" || res.Added != 2 || res.Deleted != 0 {
		t.Fatalf("the next version: %+v, %v; want a diff adding two records", res, err)
	}
	// v3's record came twice and is written twice, as a create of that stream writes it;
	// the held record the old index has twice is written once.
	wantLines(t, filepath.Join(zonesDir, "example.com.zone"), 1+1+200+3+1)
}

// sortedLines are a zone file's records, sorted, each once (a record repeated is one RR).
func sortedLines(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")[1:] // the comment line
	slices.Sort(lines)
	return slices.Compact(lines)
}

// A zone with more records than the index keeps entries of in memory while it streams:
// the rest spill to a temp file, and the table built from both still finds every record.
func TestDiffOfAZoneLargerThanTheMemoryLog(t *testing.T) {
	zonesDir := t.TempDir()
	b, err := file.New(file.Config{ZoneFilePath: zonesDir, FileMode: 0o644, CommandTimeout: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := zonediff.Open(t.TempDir(), zonediff.DefaultMaxRatio)
	if err != nil {
		t.Fatal(err)
	}
	at := func(serial uint32, n int) backend.Source { return zoneAt(serial, n, 500) }
	if res, err := idx.Full(t.Context(), b, zone, false, 0, at(1, 10_000)); err != nil || res.Apply != "create" {
		t.Fatalf("create: %+v %v", res, err)
	}
	res, err := idx.Full(t.Context(), b, zone, true, 1, at(2, 10_001))
	if err != nil || res.Apply != "diff" || res.Added != 1 || res.Deleted != 0 {
		t.Fatalf("got %+v, %v; want a diff adding the one new record", res, err)
	}
	wantLines(t, filepath.Join(zonesDir, "example.com.zone"), 2+10_001)
}

// The file backend rewrites a zone's file whole either way, so a zone of at most
// SmallZone records gets no index there: a CREATE leaves no file in diff_index_dir, and a
// change of such a zone is a replace that leaves the new version in place. Once the zone
// grows past SmallZone it is indexed again and its next change is a diff; shrunk back,
// its index goes.
func TestSmallZonesOfTheFileBackendAreNotIndexed(t *testing.T) {
	b, idx, zoneFile, idxDir := fileAndIndex(t)
	at := func(serial uint32, n int) backend.Source { return zoneAt(serial, n, 7) }
	leftInIndexDir := func() []string { return backendtest.DirNames(t, idxDir) }
	small := zonediff.SmallZone - 1 // and the NS: SmallZone records besides the SOA
	if res, err := idx.Full(t.Context(), b, zone, false, 0, at(1, small)); err != nil || res.Apply != "create" {
		t.Fatalf("create: %+v %v", res, err)
	}
	if left := leftInIndexDir(); len(left) != 0 {
		t.Fatalf("a small zone's create left %v in the index directory", left)
	}
	res, err := idx.Full(t.Context(), b, zone, true, 1, at(2, small-3))
	if err != nil || res.Apply != "replace" || !strings.Contains(res.Reason, "at most 100 records") {
		t.Fatalf("a small zone's change: %+v, %v; want a replace saying why", res, err)
	}
	wantLines(t, zoneFile, 2+small-3)
	// One record past the limit (the NS and SmallZone more): indexed.
	if res, err := idx.Full(t.Context(), b, zone, true, 2, at(3, zonediff.SmallZone)); err != nil || res.Apply != "replace" {
		t.Fatalf("growing past SmallZone: %+v, %v; want a replace", res, err)
	}
	if left := indexFiles(t, idxDir); len(left) != 1 {
		t.Fatalf("index files after the zone grew: %v", left)
	}
	res, err = idx.Full(t.Context(), b, zone, true, 3, at(4, zonediff.SmallZone+1))
	if err != nil || res.Apply != "diff" || res.Added != 1 || res.Deleted != 0 {
		t.Fatalf("a change of the grown zone: %+v, %v; want a diff adding one record", res, err)
	}
	wantLines(t, zoneFile, 2+zonediff.SmallZone+1)
	if res, err := idx.Full(t.Context(), b, zone, true, 4, at(5, 5)); err != nil || res.Apply != "replace" {
		t.Fatalf("shrinking to 5 records: %+v, %v; want a replace (over diff_max_ratio)", res, err)
	}
	wantLines(t, zoneFile, 2+5)
	if left := leftInIndexDir(); len(left) != 0 {
		t.Fatalf("the shrunk zone's index is still there: %v", left)
	}
}

// An index that cannot be written (its directory gone, a full disk, a record it cannot
// hold) does not fail the change: the zone is created all the same, Result says why it has no index, and its
// next full zone is a replace. A small zone, which is meant to have none, reports nothing.
func TestIndexNotWrittenIsReported(t *testing.T) {
	b, idx, zoneFile, idxDir := fileAndIndex(t)
	if err := os.RemoveAll(idxDir); err != nil {
		t.Fatal(err)
	}
	big := zonediff.SmallZone + 50
	res, err := idx.Full(t.Context(), b, zone, false, 0, zoneAt(1, big, 50))
	if err != nil || res.Apply != "create" || !strings.Contains(res.IndexErr, "no such file or directory") {
		t.Fatalf("create with the index directory gone: %+v, %v; want a create reporting the index error", res, err)
	}
	wantLines(t, zoneFile, 2+big)
	res, err = idx.Full(t.Context(), b, zone, true, 1, zoneAt(2, big+1, 50))
	if err != nil || res.Apply != "replace" || !strings.Contains(res.Reason, "no index") {
		t.Fatalf("the next version: %+v, %v; want a replace for want of an index", res, err)
	}
	wantLines(t, zoneFile, 2+big+1)

	small, smallIdx, _, smallDir := fileAndIndex(t)
	os.RemoveAll(smallDir)
	if res, err := smallIdx.Full(t.Context(), small, zone, false, 0, zoneAt(1, 5, 50)); err != nil || res.IndexErr != "" {
		t.Fatalf("a small zone's create: %+v, %v; want no index error", res, err)
	}

	// A record the index cannot hold in wire form (a TXT string over 255 bytes, which the
	// file backend writes as text): reported the same way.
	odd, oddIdx, oddFile, _ := fileAndIndex(t)
	rrs := backendtest.Zone(zone, 1, big)
	rrs = append(rrs, &dns.TXT{Hdr: dns.RR_Header{Name: "long." + zone, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: []string{strings.Repeat("a", 300)}})
	res, err = oddIdx.Full(t.Context(), odd, zone, false, 0, backendtest.Stream(backendtest.Batches(rrs, 20)...))
	if err != nil || res.Apply != "create" || !strings.Contains(res.IndexErr, "long.example.com.") {
		t.Fatalf("create with an unpackable record: %+v, %v; want a create reporting the record", res, err)
	}
	wantLines(t, oddFile, 2+big+1)
}

// Every small zone's change gives the one reason string, not a copy each: the engine keeps
// each zone's last reason, 100,000 zones of them.
func TestSmallZoneReasonShared(t *testing.T) {
	var reasons []string
	for range 2 {
		b, idx, _, _ := fileAndIndex(t)
		if _, err := idx.Full(t.Context(), b, zone, false, 0, zoneAt(1, 5, 50)); err != nil {
			t.Fatal(err)
		}
		res, err := idx.Full(t.Context(), b, zone, true, 1, zoneAt(2, 6, 50))
		if err != nil || res.Apply != "replace" {
			t.Fatalf("%+v, %v; want a replace", res, err)
		}
		reasons = append(reasons, res.Reason)
	}
	if unsafe.StringData(reasons[0]) != unsafe.StringData(reasons[1]) {
		t.Errorf("two small zones' replace reasons are two strings (%q): each zone would keep its own copy", reasons[0])
	}
}
