package backend

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// patched runs a change set over stored (SOA first) the way the file backend does and
// returns the new zone's records as presentation lines, sorted.
func patched(t *testing.T, cs *ChangeSet, stored []dns.RR) ([]string, error) {
	t.Helper()
	p := cs.Patcher()
	if err := p.Start(stored[0].(*dns.SOA)); err != nil {
		return nil, err
	}
	out := []string{p.SOA().String()}
	for _, rr := range stored[1:] {
		if p.Keep(rr) {
			out = append(out, rr.String())
		}
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	var want, lines []string
	err := p.EachAdded(func(rr dns.RR) error {
		out = append(out, rr.String())
		want = append(want, Presentation(rr))
		return nil
	})
	if err == nil {
		err = p.EachAddedLine(func(line []byte) error {
			lines = append(lines, string(line))
			return nil
		})
	}
	if !slices.Equal(lines, want) {
		t.Errorf("EachAddedLine gives %q, EachAdded the records of %q", lines, want)
	}
	slices.Sort(out)
	return out, err
}

// A change set spilled to disk applies exactly like one held in memory: TTL changes,
// records added by one step and deleted by the next, deletions of missing records.
func TestSpooledChangeSetAppliesLikeInMemory(t *testing.T) {
	soa := func(serial string) *dns.SOA {
		return mustRR(t, "example.com. 300 IN SOA ns. h. "+serial+" 1 1 1 1").(*dns.SOA)
	}
	stored := []dns.RR{soa("1"), mustRR(t, "a.example.com. 300 IN A 192.0.2.1"),
		mustRR(t, "b.example.com. 300 IN A 192.0.2.2"), mustRR(t, "c.example.com. 300 IN TXT \"keep\"")}
	build := func(budget int, bad bool) *ChangeSet {
		cs := &ChangeSet{Zone: "example.com."}
		cs.Spool(t.TempDir(), budget)
		steps := []struct {
			old, new string
			del, add []string
		}{
			{"1", "2", []string{"a.example.com. 300 IN A 192.0.2.1"}, []string{"a.example.com. 60 IN A 192.0.2.1", "x.example.com. 1 IN A 192.0.2.9"}},
			{"2", "3", []string{"x.example.com. 1 IN A 192.0.2.9", "b.example.com. 300 IN A 192.0.2.2"}, []string{"d.example.com. 300 IN AAAA 2001:db8::1"}},
		}
		if bad {
			steps[1].del = append(steps[1].del, "nothere.example.com. 300 IN A 192.0.2.7")
		}
		for _, s := range steps {
			cs.StartStep(soa(s.old))
			for _, r := range s.del {
				if err := cs.Append(mustRR(t, r), false); err != nil {
					t.Fatal(err)
				}
			}
			cs.Steps[len(cs.Steps)-1].New = soa(s.new)
			for _, r := range s.add {
				if err := cs.Append(mustRR(t, r), true); err != nil {
					t.Fatal(err)
				}
			}
		}
		return cs
	}
	mem, disk := build(0, false), build(2, false)
	defer disk.Close()
	if mem.Spooled() || !disk.Spooled() {
		t.Fatalf("spooled: budget 0 %v, budget 2 %v; want false, true", mem.Spooled(), disk.Spooled())
	}
	want, err := patched(t, mem, stored)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted in memory, and in partitions on disk (of one change: 4 partitions).
	defer func(n int) { sortPartition = n }(sortPartition)
	for _, sortPartition = range []int{1 << 16, 1} {
		got, err := patched(t, disk, stored)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("spooled change set, sorted in partitions of %d, gives\n%v\nin memory\n%v", sortPartition, got, want)
		}
	}
	if d, a := disk.Size(); d != 3 || a != 3 {
		t.Errorf("Size %d, %d; want 3, 3", d, a)
	}
	if len(want) != 4 || !slices.Contains(want, "a.example.com.\t60\tIN\tA\t192.0.2.1") || slices.Contains(want, "x.example.com.\t1\tIN\tA\t192.0.2.9") {
		t.Errorf("patched zone %v", want)
	}
	in, err := disk.InMemory()
	if err != nil || in.Spooled() || in.String() != mem.String() {
		t.Errorf("InMemory: %v\n%s\nwant\n%s", err, in, mem)
	}
	if cp := disk.Copy(); cp.String() != mem.String() {
		t.Errorf("Copy of a spooled change set:\n%s\nwant\n%s", cp, mem)
	}
	bad := build(2, true)
	defer bad.Close()
	for _, sortPartition = range []int{1 << 16, 1} {
		if _, err := patched(t, bad, stored); err == nil || !errors.Is(err, ErrInconsistent) {
			t.Errorf("deleting a missing record, sorted in partitions of %d: %v, want ErrInconsistent", sortPartition, err)
		}
	}
}

// The spool is unlinked at once: nothing appears in its directory, and Close frees it.
func TestSpoolLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	cs := &ChangeSet{Zone: "example.com."}
	cs.Spool(dir, 1)
	cs.StartStep(mustRR(t, "example.com. 300 IN SOA ns. h. 1 1 1 1 1").(*dns.SOA))
	for range 10 {
		if err := cs.Append(mustRR(t, "a.example.com. 300 IN A 192.0.2.1"), false); err != nil {
			t.Fatal(err)
		}
	}
	if ents, _ := os.ReadDir(dir); !cs.Spooled() || len(ents) != 0 {
		t.Errorf("spooled %v, spool dir holds %v", cs.Spooled(), ents)
	}
	if err := cs.Close(); err != nil {
		t.Error(err)
	}
}

// The Patcher hashes keys in scratch buffers (hashRR, hashLine) instead of building Key
// strings: the hashes must be those of Key and KeyOfLine exactly, or an apply would keep
// or drop the wrong records. Non-ASCII owners and lines of another shape included.
func TestPatcherHashesAsKey(t *testing.T) {
	cs := &ChangeSet{Zone: "example.com."}
	cs.StartStep(&dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Serial: 1})
	cs.Steps[0].New = &dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Serial: 2}
	p := cs.Patcher()
	for _, text := range []string{
		`Www.Example.com. 300 IN A 192.0.2.1`,
		`example.com. 300 IN MX 10 Mail.example.com.`,
		`t.example.com. 300 IN TXT "a	b" "c\"d"`,
		`x.example.com. 300 IN TYPE65534 \# 4 0a000001`,
		`ÄBC.example.com. 300 IN A 192.0.2.2`,
		`a\ b.EXAMPLE.com. 300 IN AAAA 2001:db8::1`,
	} {
		rr := mustRR(t, text)
		key, owner := p.hashRR(rr)
		line := Presentation(rr)
		if key != p.hash(Key(rr)) || owner != p.hash(strings.ToLower(line[:strings.IndexByte(line, '\t')])) {
			t.Errorf("%s: hashRR differs from the hash of Key %q or of its owner", text, Key(rr))
		}
	}
	for _, line := range []string{"", "; comment", "\tx\ty\tz\tw", "example.com. IN A 192.0.2.1", "a\tb\tc\td"} {
		if key, owner := p.hashLine([]byte(line)); key != p.hash(line) || owner != p.hash("") {
			t.Errorf("hashLine(%q) is not the hash of the line itself, as keyAndOwner's", line)
		}
	}
}
