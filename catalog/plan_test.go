package catalog

import (
	"strings"
	"testing"
)

// version builds a catalog version from "label=zone[,coo=catalog]" items.
func version(name string, serial uint32, items ...string) *Catalog {
	c := &Catalog{Zone: name, Serial: serial, Members: map[string]Member{}, Unusable: map[string]string{}}
	for _, item := range items {
		parts := strings.Split(item, ",")
		label, zone, _ := strings.Cut(parts[0], "=")
		m := Member{Zone: zone, Label: label}
		for _, p := range parts[1:] {
			if target, ok := strings.CutPrefix(p, "coo="); ok {
				m.COO = target
			}
		}
		c.Members[zone] = m
	}
	return c
}

func TestMakePlan(t *testing.T) {
	const cat = "cat.test."
	tests := []struct {
		name   string
		in     planInput
		want   string // plan.String()
		claims map[string]owner
	}{
		{
			name:   "new members are created unless the backend holds them already",
			in:     planInput{next: version(cat, 2, "a=a.test.", "b=b.test.", "c=c.test."), held: map[string]presence{"a.test.": absent, "b.test.": present, "c.test.": unknown}},
			want:   "create a.test.\nignore b.test.\nretry c.test.",
			claims: map[string]owner{"a.test.": {cat, "a"}},
		},
		{
			name: "owned members: kept, ensured when asked, reset on a new label, deleted when removed",
			in: planInput{next: version(cat, 2, "a=a.test.", "b=b.test.", "new=c.test."), ensure: map[string]bool{"b.test.": true},
				owners: map[string]owner{"a.test.": {cat, "a"}, "b.test.": {cat, "b"}, "c.test.": {cat, "c"}, "d.test.": {cat, "d"}}},
			want:   "delete d.test.\nensure b.test.\nreset c.test.",
			claims: map[string]owner{"c.test.": {cat, "new"}},
		},
		{
			name: "zones other sources own are never deleted",
			in: planInput{next: version(cat, 2), others: map[string]*Catalog{"other.test.": nil},
				owners: map[string]owner{"x.test.": {"other.test.", "x"}}},
			want: "",
		},
		{
			name: "a member another catalog owns is ignored without a coo naming us",
			in: planInput{next: version(cat, 2, "x=x.test."), others: map[string]*Catalog{"other.test.": version("other.test.", 1, "x=x.test.")},
				owners: map[string]owner{"x.test.": {"other.test.", "x"}}},
			want: "ignore x.test.",
		},
		{
			name: "the owner's coo hands the member over: same label kept, another label resets",
			in: planInput{next: version(cat, 2, "x=x.test.", "y2=y.test."),
				others: map[string]*Catalog{"other.test.": version("other.test.", 1, "x=x.test.,coo="+cat, "y=y.test.,coo="+cat)},
				owners: map[string]owner{"x.test.": {"other.test.", "x"}, "y.test.": {"other.test.", "y"}}},
			want:   "ensure x.test.\nreset y.test.",
			claims: map[string]owner{"x.test.": {cat, "x"}, "y.test.": {cat, "y2"}},
		},
		{
			name: "our coo hands a member to a catalog that lists it, not to one that does not",
			in: planInput{next: version(cat, 2, "x=x.test.,coo=other.test.", "y=y.test.,coo=other.test."),
				others: map[string]*Catalog{"other.test.": version("other.test.", 1, "x2=x.test.")},
				owners: map[string]owner{"x.test.": {cat, "x"}, "y.test.": {cat, "y"}}},
			want: "hand-off x.test. to other.test.",
		},
		{
			name: "a member removed after its coo goes to the new owner instead of being deleted",
			in: planInput{next: version(cat, 3), prev: version(cat, 2, "x=x.test.,coo=other.test."),
				others: map[string]*Catalog{"other.test.": version("other.test.", 1, "x=x.test.")},
				owners: map[string]owner{"x.test.": {cat, "x"}}},
			want: "hand-off x.test. to other.test.",
		},
		{
			name: "coos pointing at each other: the owner keeps the member, the other does not take it (coo loop)",
			in: planInput{next: version(cat, 2, "x=x.test.,coo=other.test.", "y=y.test.,coo=other.test."),
				others: map[string]*Catalog{"other.test.": version("other.test.", 1, "x=x.test.,coo="+cat, "y=y.test.,coo="+cat)},
				owners: map[string]owner{"x.test.": {cat, "x"}, "y.test.": {"other.test.", "y"}}},
			want: "coo loop x.test. via other.test.\nignore y.test.",
		},
		{
			name: "a loop through three catalogs is not followed either",
			in: planInput{next: version(cat, 2, "x=x.test.,coo=b.test."),
				others: map[string]*Catalog{"b.test.": version("b.test.", 1, "x=x.test.,coo=c.test."),
					"c.test.": version("c.test.", 1, "x=x.test.,coo="+cat)},
				owners: map[string]owner{"x.test.": {cat, "x"}}},
			want: "coo loop x.test. via b.test.",
		},
		{
			name: "a coo chain that ends elsewhere is followed",
			in: planInput{next: version(cat, 2, "x=x.test.,coo=b.test."),
				others: map[string]*Catalog{"b.test.": version("b.test.", 1, "x=x.test.,coo=c.test."),
					"c.test.": version("c.test.", 1, "x=x.test.")},
				owners: map[string]owner{"x.test.": {cat, "x"}}},
			want: "hand-off x.test. to b.test.",
		},
		{
			name: "a consumed catalog listed as a member is ignored",
			in:   planInput{next: version(cat, 2, "o=other.test."), others: map[string]*Catalog{"other.test.": nil}, held: map[string]presence{"other.test.": absent}},
			want: "ignore other.test.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.catalog = cat
			p := makePlan(tt.in)
			if got := p.String(); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
			if len(p.claims) != len(tt.claims) {
				t.Errorf("claims %v, want %v", p.claims, tt.claims)
			}
			for zone, o := range tt.claims {
				if p.claims[zone] != o {
					t.Errorf("claim of %s = %v, want %v", zone, p.claims[zone], o)
				}
			}
		})
	}
}

func TestMassRemovalGuard(t *testing.T) {
	owners := map[string]owner{}
	var items []string
	for _, z := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		owners[z+".test."] = owner{"cat.test.", z}
		items = append(items, z+"="+z+".test.")
	}
	for _, tt := range []struct {
		keep int
		max  float64
		held bool
	}{
		{keep: 10, max: 0.5, held: false},
		{keep: 5, max: 0.5, held: false}, // exactly half: allowed
		{keep: 4, max: 0.5, held: true},
		{keep: 1, max: 0.5, held: true},
		{keep: 0, max: 1, held: false}, // 1 turns the guard off
		{keep: 8, max: 0.1, held: true},
	} {
		p := makePlan(planInput{catalog: "cat.test.", next: version("cat.test.", 2, items[:tt.keep]...), owners: owners})
		if got := p.tooManyDeletes(tt.max); got != tt.held || p.owned != 10 || p.deletes != 10-tt.keep {
			t.Errorf("keeping %d of 10 with max %v: held %v (deletes %d of %d), want %v", tt.keep, tt.max, got, p.deletes, p.owned, tt.held)
		}
	}
}
