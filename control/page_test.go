package control

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dnsagent/dnsagent/transfer"
)

// A page of statuses names the next one in a Link header with the listing's own path,
// carries the state filter on, and a bad limit or state is answered 400.
func TestPageLinksTheNextPage(t *testing.T) {
	var asked []any
	pages := func(state, after string, limit int) ([]transfer.Status, bool) {
		asked = append(asked, state, after, limit)
		return []transfer.Status{{Zone: "a.test."}, {Zone: "b.test."}}, true
	}
	w := httptest.NewRecorder()
	page, ok := Page(w, httptest.NewRequest("GET", "/v1/zones?limit=2&state=idle&after=A.test", nil), "/v1/zones", pages)
	if !ok || len(page) != 2 {
		t.Fatalf("page %v, ok %v", page, ok)
	}
	if got := asked; got[0] != "idle" || got[1] != "a.test." || got[2] != 2 {
		t.Errorf("asked for state %v after %v limit %v, want idle, a.test. (canonical), 2", got[0], got[1], got[2])
	}
	if link := w.Header().Get("Link"); link != `</v1/zones?after=b.test.&limit=2&state=idle>; rel="next"` {
		t.Errorf("Link %q", link)
	}
	for _, q := range []string{"limit=0", "limit=10001", "limit=x", "state=bogus"} {
		w := httptest.NewRecorder()
		if _, ok := Page(w, httptest.NewRequest("GET", "/v1/zones?"+q, nil), "/v1/zones", pages); ok || w.Code != 400 ||
			!strings.Contains(w.Body.String(), strings.Split(q, "=")[0]) {
			t.Errorf("?%s: ok %v, %d %s; want 400 naming the parameter", q, ok, w.Code, w.Body)
		}
	}
}
