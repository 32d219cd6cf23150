package service

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/catalog"
	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/request/requesttest"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

func TestReadConfigCatalogOptions(t *testing.T) {
	cfg := testConfig(t, "")
	if c := cfg.Catalog; len(c.Zones) != 0 || c.StateFile != catalog.DefaultStateFile || c.MaxRemoval != 0.5 || c.ConfirmRemoval {
		t.Errorf("catalog defaults %+v", c)
	}
	cfg = testConfig(t, "catalog_zones = Catalog.Example, other.example.\ncatalog_state_file = /tmp/x.json\n"+
		"catalog_max_removal = 25%\ncatalog_confirm_removal = true\n")
	if c := cfg.Catalog; strings.Join(c.Zones, " ") != "catalog.example. other.example." || c.StateFile != "/tmp/x.json" ||
		c.MaxRemoval != 0.25 || !c.ConfirmRemoval {
		t.Errorf("catalog options %+v", c)
	}
	for text, want := range map[string]string{
		"catalog_max_removal = 2\n":            "[service:agent] catalog_max_removal: 2 is not a share in (0, 1]",
		"catalog_max_removal = half\n":         `[service:agent] catalog_max_removal: "half" is not a number`,
		"catalog_zones = bad/name.example\n":   `[service:agent] catalog_zones: zone name "bad/name.example."`,
		"catalog_zones = a.example, A.example": "[service:agent] catalog_zones: a.example. is listed twice",
	} {
		f, err := config.Parse("[service:agent]\nmasters = 127.0.0.1:5354\n" + text)
		if err != nil {
			t.Fatal(err)
		}
		ReadConfig(f)
		if err := f.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", text, err, want)
		}
	}
}

// With catalog_zones set, a NOTIFY for the catalog is taken before its first transfer
// (the masters are down here), and /catalogs and /metrics report on it.
func TestCatalogWiring(t *testing.T) {
	cfg := testConfig(t, "catalog_zones = catalog.example\ncatalog_state_file = "+filepath.Join(t.TempDir(), "c.json")+"\n")
	cfg.Transfer.Masters[0] = netip.MustParseAddrPort("127.0.0.1:1") // nobody answers
	s := New(cfg, memory.New(), zap.NewNop())
	t.Cleanup(s.transfer.Close)
	t.Cleanup(s.catalogs.Close)

	for zone, rcode := range map[string]int{"catalog.example.": dns.RcodeSuccess, "stranger.example.": dns.RcodeRefused} {
		w := requesttest.New("192.0.2.1", false)
		s.handler.ServeDNS(context.Background(), w, new(dns.Msg).SetNotify(zone))
		reply := new(dns.Msg)
		if err := reply.Unpack(w.Reply()); err != nil || reply.Rcode != rcode {
			t.Errorf("NOTIFY %s: rcode %d (%v), want %d", zone, reply.Rcode, err, rcode)
		}
	}

	srv := httptest.NewServer(s.httpHandler())
	defer srv.Close()
	var statuses []catalog.Status
	getJSON(t, srv.URL+"/catalogs", &statuses)
	if len(statuses) != 1 || statuses[0].Catalog != "catalog.example." || statuses[0].Broken {
		t.Errorf("/catalogs = %+v", statuses)
	}
	var detail catalog.Detail
	getJSON(t, srv.URL+"/catalogs/Catalog.Example", &detail)
	if detail.Catalog != "catalog.example." || detail.Zones == nil {
		t.Errorf("/catalogs/NAME = %+v", detail)
	}
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `dnsagent_catalog_members{catalog="catalog.example."} 0`) {
		t.Error("/metrics has no dnsagent_catalog_members for the catalog")
	}
	resp, err = srv.Client().Get(srv.URL + "/catalogs/other.example")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/catalogs of a catalog not consumed: %d, want 404", resp.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	body := get(t, url)
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", url, err, body)
	}
}

// get returns the body url serves.
func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
