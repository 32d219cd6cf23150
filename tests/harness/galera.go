package harness

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GaleraProvider is Debian galera-4's wsrep provider library.
const GaleraProvider = "/usr/lib/galera/libgalera_smm.so"

// Galera is a MariaDB Galera cluster on loopback: every node a private mariadbd (its own
// data directory, SQL port, and group communication, IST and SST ports).
type Galera struct {
	Nodes []*MariaDB
}

// StartGalera starts an n-node cluster: node 1 bootstraps it (--wsrep-new-cluster), the
// others join and receive its data by rsync SST. extra are more mariadbd options of
// every node (wsrep_max_ws_rows...). A missing galera-4 or rsync is a failure under
// CI=true, a skip otherwise.
func StartGalera(t testing.TB, n int, extra ...string) *Galera {
	t.Helper()
	if _, err := os.Stat(GaleraProvider); err != nil {
		if ci() {
			t.Fatalf("%s not found (install galera-4; CI=true: a missing tool is a failure)", GaleraProvider)
		}
		t.Skipf("%s not found (install galera-4)", GaleraProvider)
	}
	Require(t, "mariadbd", "mariadb-install-db", "rsync")
	server := mustLook(t, "mariadbd")
	// Not t.TempDir: run as root, the SST's rsync daemon drops to nobody, who must reach
	// and own the joiners' data directories.
	base, err := os.MkdirTemp("", "galera")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) // registered first: runs after the nodes stop
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	type ports struct{ gcomm, ist, sst int }
	ps := make([]ports, n)
	var members []string
	for i := range ps {
		ps[i] = ports{FreePort(t), FreePort(t), FreePort(t)}
		members = append(members, fmt.Sprintf("127.0.0.1:%d", ps[i].gcomm))
	}
	g := &Galera{}
	for i := 0; i < n; i++ {
		m := &MariaDB{t: t, dir: filepath.Join(base, fmt.Sprintf("node%d", i+1)), port: FreePort(t), binary: server}
		if err := os.MkdirAll(m.datadir(), 0o755); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			m.install(t)
		} else if os.Geteuid() == 0 {
			if u, err := user.Lookup("nobody"); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				if err := os.Chown(m.datadir(), uid, gid); err != nil {
					t.Fatal(err)
				}
			}
		}
		m.extra = append([]string{
			"--wsrep-on=ON",
			"--wsrep-provider=" + GaleraProvider,
			"--wsrep-cluster-name=dnsagent-test",
			"--wsrep-cluster-address=gcomm://" + strings.Join(members, ","),
			fmt.Sprintf("--wsrep-node-name=node%d", i+1),
			fmt.Sprintf("--wsrep-node-address=127.0.0.1:%d", ps[i].gcomm),
			fmt.Sprintf("--wsrep-sst-receive-address=127.0.0.1:%d", ps[i].sst),
			"--wsrep-sst-method=rsync",
			// A killed node is noticed within seconds (defaults: 5 s suspect, 15 s inactive).
			fmt.Sprintf("--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;ist.recv_addr=127.0.0.1:%d;"+
				"gcache.size=256M;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT3S;evs.install_timeout=PT3S;"+
				"evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S", ps[i].gcomm, ps[i].ist),
			"--binlog-format=ROW",
			"--innodb-autoinc-lock-mode=2",
		}, extra...)
		t.Cleanup(func() { m.stop(false) })
		g.Nodes = append(g.Nodes, m)
	}
	first := g.Nodes[0]
	first.extra = append(first.extra, "--wsrep-new-cluster")
	first.Start(t)
	first.extra = first.extra[:len(first.extra)-1] // a restart joins the cluster
	for _, m := range g.Nodes[1:] {
		m.Start(t)
	}
	for _, m := range g.Nodes {
		g.waitSynced(t, m, n)
	}
	return g
}

// waitSynced waits (60 s at most) until the node is Synced in a cluster of size nodes.
func (g *Galera) waitSynced(t testing.TB, m *MariaDB, size int) {
	t.Helper()
	db := m.open(t, "", false)
	defer db.Close()
	var state string
	var got int
	ok := Eventually(60*time.Second, 100*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var name string
		if db.QueryRowContext(ctx, `SHOW STATUS LIKE 'wsrep_local_state_comment'`).Scan(&name, &state) != nil {
			return false
		}
		db.QueryRowContext(ctx, `SHOW STATUS LIKE 'wsrep_cluster_size'`).Scan(&name, &got)
		return state == "Synced" && got == size
	})
	if !ok {
		t.Fatalf("Galera node %s not Synced in a cluster of %d after 60 s (state %q, size %d); output:\n%s",
			m.Addr(), size, state, got, m.Output())
	}
}
