package powerdns

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// nodes are the database servers the agent may write to (hosts, or several DSNs): the
// members of a Galera cluster, which all hold the same data. One is used at a time (the
// current one); a node error moves to the next node that says it is ready, and after
// failback the first node is tried again, so every agent of a site writes to the same
// node when it is up (writing to one node avoids certification conflicts between agents).
type nodes struct {
	dbs      []*sql.DB
	addrs    []string
	failback time.Duration

	mu    sync.Mutex
	cur   int
	since time.Time // when cur stopped being the first node
}

// pick returns the node to use and its index. Away from the first node for longer than
// failback, it goes back to it when the first node is ready.
func (n *nodes) pick(ctx context.Context) (*sql.DB, int) {
	n.mu.Lock()
	cur, away := n.cur, n.cur != 0 && time.Since(n.since) >= n.failback
	if away {
		n.since = time.Now() // one probe per failback period, not one per caller
	}
	n.mu.Unlock()
	if away && ready(ctx, n.dbs[0]) == nil {
		n.mu.Lock()
		n.cur, cur = 0, 0
		n.mu.Unlock()
	}
	return n.dbs[cur], cur
}

// failed records err of a statement on node i: after an error of the node (rather than
// of the transaction), the next ready node becomes the current one. A node that fails
// while another is current already changes nothing (several zones see one outage).
func (n *nodes) failed(ctx context.Context, i int, err error) {
	if len(n.dbs) < 2 || !nodeError(err) {
		return
	}
	n.mu.Lock()
	if n.cur != i {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	next := (i + 1) % len(n.dbs)
	for k := 1; k < len(n.dbs); k++ {
		c := (i + k) % len(n.dbs)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rerr := ready(pctx, n.dbs[c])
		cancel()
		if rerr == nil {
			next = c
			break
		}
	}
	n.mu.Lock()
	if n.cur == i {
		n.cur = next
		if i == 0 || n.since.IsZero() {
			n.since = time.Now()
		}
	}
	n.mu.Unlock()
}

// errNotReady: the node is a Galera node that does not accept queries now.
var errNotReady = errors.New("wsrep_ready is OFF")

// ready asks the node whether it accepts queries: wsrep_ready is OFF on a Galera node
// that is not part of the primary component or not synced yet (it answers 1047 to
// queries then). A server without Galera has no such status and is ready when it answers.
func ready(ctx context.Context, db *sql.DB) error {
	var name, value string
	err := db.QueryRowContext(ctx, `SHOW STATUS LIKE 'wsrep_ready'`).Scan(&name, &value)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if !strings.EqualFold(value, "ON") {
		return errNotReady
	}
	return nil
}

// nodeError reports errors that say the node, not the transaction, is the problem: it is
// down, unreachable, shutting down, or not ready. Deadlocks (certification conflicts
// included) and lock wait timeouts are the transaction's: retried on the same node.
func nodeError(err error) bool {
	if errors.Is(err, errNotReady) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number != erLockDeadlock && me.Number != erLockWaitTimeout && !wsLimitExceeded(me) && retryable(err)
	}
	return retryable(err)
}

// wsLimitExceeded tells a transaction bigger than the node's write-set limit (1180,
// "wsrep_max_ws_rows exceeded"): the transaction's fault, which every node refuses alike,
// not the node's; its retry reads the limits again (stage.go).
func wsLimitExceeded(me *mysql.MySQLError) bool {
	return me.Number == erErrorDuringCommit && strings.Contains(me.Message, "wsrep_max_ws_")
}

func (n *nodes) close() error {
	var errs []error
	for _, db := range n.dbs {
		errs = append(errs, db.Close())
	}
	return errors.Join(errs...)
}
