package transfer

import (
	"math"
	"net/netip"
	"slices"
	"time"
)

// keptSummary is the last transfer of a zone as the scheduler keeps it between checks:
// 80 bytes instead of a Summary's 192 and its master string, for with 100,000 zones
// every held zone has one (issue 15: ≤ 100 MiB RSS). The strings a transfer usually has
// (type, apply path, "applied", a configured master) are small codes; the rest, rare
// (a fallback reason, a failure, an unlisted master), sits behind a pointer.
type keptSummary struct {
	at              int64 // unix nanoseconds
	transfer, apply time.Duration
	from, to        uint32
	records, bytes  uint32 // saturated at math.MaxUint32
	deleted, added  uint32
	master          uint8 // 1 + index in Config.Masters; 0: rare.master
	kind, path      uint8 // 1 + index in summaryKinds, summaryPaths; 0: rare
	rare            *rareSummary
}

type rareSummary struct {
	master, kind, path, fallback, pathReason, result string
}

var (
	summaryKinds = []string{"AXFR", "IXFR", "IXFR-full"}
	summaryPaths = []string{"", "create", "diff", "replace", "ixfr", "none"}
)

// code is 1 + the index of s in list, or 0 (and s goes to *rare) when it is not listed.
func code(list []string, s string, rare *string) uint8 {
	if i := slices.Index(list, s); i >= 0 && i < math.MaxUint8 {
		return uint8(i + 1)
	}
	*rare = s
	return 0
}

func decode(list []string, c uint8, rare string) string {
	if c == 0 {
		return rare
	}
	return list[c-1]
}

func saturate(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) }

// keep compacts s; masters are the configured ones.
func keep(s *Summary, masters []netip.AddrPort) *keptSummary {
	var r rareSummary
	k := &keptSummary{at: s.At.UnixNano(), transfer: s.Transfer, apply: s.Apply, from: s.From, to: s.To,
		records: saturate(s.Records), bytes: saturate(s.Bytes), deleted: saturate(s.Deleted), added: saturate(s.Added)}
	r.master = s.Master
	for i, m := range masters {
		if i < math.MaxUint8-1 && m.String() == s.Master {
			k.master, r.master = uint8(i+1), ""
			break
		}
	}
	k.kind = code(summaryKinds, s.Type, &r.kind)
	k.path = code(summaryPaths, s.Path, &r.path)
	r.fallback, r.pathReason = s.Fallback, s.PathReason
	if s.Result != "applied" {
		r.result = s.Result
	}
	if r != (rareSummary{}) {
		k.rare = &r
	}
	return k
}

// summary expands k back into the Summary of zone's transfer.
func (k *keptSummary) summary(zone string, masters []netip.AddrPort) *Summary {
	var r rareSummary
	if k.rare != nil {
		r = *k.rare
	}
	s := &Summary{Zone: zone, Master: r.master, Type: decode(summaryKinds, k.kind, r.kind), Fallback: r.fallback,
		From: k.from, To: k.to, Records: int(k.records), Bytes: int(k.bytes), Transfer: k.transfer, Apply: k.apply,
		Path: decode(summaryPaths, k.path, r.path), PathReason: r.pathReason, Deleted: int(k.deleted), Added: int(k.added),
		Result: r.result, At: time.Unix(0, k.at)}
	if k.master > 0 {
		s.Master = masters[k.master-1].String()
	}
	if s.Result == "" {
		s.Result = "applied"
	}
	return s
}
