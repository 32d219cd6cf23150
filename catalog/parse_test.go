package catalog

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const catalogHead = `catalog.test. 0 IN SOA invalid. invalid. 7 3600 600 86400 0
catalog.test. 0 IN NS invalid.
`

// records parses zone-file lines with absolute names.
func records(t *testing.T, text string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), "", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	return rrs
}

func TestParseValidCatalog(t *testing.T) {
	rrs := records(t, catalogHead+`version.catalog.test. 0 IN TXT "2"
m1.zones.catalog.test. 0 IN PTR Example.COM.
group.m1.zones.catalog.test. 0 IN TXT "blue"
group.m1.zones.catalog.test. 0 IN TXT "green"
M2.zones.catalog.test. 0 IN PTR example.net.
coo.m2.zones.catalog.test. 0 IN PTR other.catalog.
unknown.m2.zones.catalog.test. 0 IN TXT "ignored"
m2.zones.catalog.test. 0 IN TXT "not a member record"
deeper.group.m1.zones.catalog.test. 0 IN TXT "ignored"
m3.zones.catalog.test. 0 IN PTR bad/name.example.
m4.zones.catalog.test. 0 IN PTR catalog.test.
ext.catalog.test. 0 IN TXT "extensions are ignored"
zones.catalog.test. 0 IN TXT "so is this"
`)
	cat, err := Parse("Catalog.Test", rrs)
	if err != nil {
		t.Fatal(err)
	}
	if cat.Serial != 7 || cat.Zone != "catalog.test." {
		t.Errorf("zone %s serial %d, want catalog.test. 7", cat.Zone, cat.Serial)
	}
	want := map[string]Member{
		"example.com.": {Zone: "example.com.", Label: "m1", Groups: []string{"blue", "green"}},
		"example.net.": {Zone: "example.net.", Label: "m2", COO: "other.catalog."},
	}
	if len(cat.Members) != len(want) {
		t.Fatalf("members %v, want %v", cat.Members, want)
	}
	for zone, w := range want {
		got := cat.Members[zone]
		if got.Label != w.Label || got.COO != w.COO || strings.Join(got.Groups, ",") != strings.Join(w.Groups, ",") {
			t.Errorf("member %s = %+v, want %+v", zone, got, w)
		}
	}
	if len(cat.Unusable) != 2 || cat.Unusable["bad/name.example."] == "" || cat.Unusable["catalog.test."] == "" {
		t.Errorf("unusable %v, want bad/name.example. and the catalog itself", cat.Unusable)
	}
}

func TestParseBrokenCatalogs(t *testing.T) {
	member := "m1.zones.catalog.test. 0 IN PTR example.com.\n"
	tests := map[string]struct {
		text string
		want string
	}{
		"no version":         {catalogHead + member, "no version.catalog.test. TXT record"},
		"version 1 only":     {catalogHead + `version.catalog.test. 0 IN TXT "1"` + "\n" + member, `schema version "1" is not supported`},
		"two versions":       {catalogHead + "version.catalog.test. 0 IN TXT \"1\"\nversion.catalog.test. 0 IN TXT \"2\"\n" + member, "exactly one is allowed"},
		"no NS":              {"catalog.test. 0 IN SOA invalid. invalid. 7 3600 600 86400 0\nversion.catalog.test. 0 IN TXT \"2\"\n", "no NS"},
		"two PTRs one label": {catalogHead + "version.catalog.test. 0 IN TXT \"2\"\n" + member + "m1.zones.catalog.test. 0 IN PTR example.org.\n", "unique label m1 has 2 PTR records"},
		"zone under two labels": {catalogHead + "version.catalog.test. 0 IN TXT \"2\"\n" + member + "m2.zones.catalog.test. 0 IN PTR EXAMPLE.com.\n",
			"member zone example.com. is listed under two unique labels, m1 and m2"},
		"two coo": {catalogHead + "version.catalog.test. 0 IN TXT \"2\"\n" + member +
			"coo.m1.zones.catalog.test. 0 IN PTR a.test.\ncoo.m1.zones.catalog.test. 0 IN PTR b.test.\n", "2 coo records"},
		"class CH": {catalogHead + "version.catalog.test. 0 IN TXT \"2\"\n" + member + "x.catalog.test. 0 CH TXT \"chaos\"\n", "class CH"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("catalog.test.", records(t, tt.text))
			var broken *BrokenError
			if !errors.As(err, &broken) {
				t.Fatalf("Parse = %v, want a BrokenError", err)
			}
			if !strings.Contains(broken.Reason, tt.want) || broken.Serial != 7 {
				t.Errorf("reason %q (serial %d), want it to say %q", broken.Reason, broken.Serial, tt.want)
			}
		})
	}
}

// The same PTR twice is one record of the RRset, not two.
func TestParseDuplicateRecordIsOne(t *testing.T) {
	text := catalogHead + "version.catalog.test. 0 IN TXT \"2\"\nm1.zones.catalog.test. 0 IN PTR example.com.\nm1.zones.catalog.test. 0 IN PTR example.com.\n"
	cat, err := Parse("catalog.test.", records(t, text))
	if err != nil || len(cat.Members) != 1 {
		t.Fatalf("Parse = %v, %v; want one member", cat, err)
	}
}
