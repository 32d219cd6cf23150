package powerdns

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"time"

	"github.com/go-sql-driver/mysql"
)

// retryPolicy retries a whole transaction that failed for a reason that goes away by
// itself: a deadlock (on Galera also a certification conflict at commit), a lock wait
// timeout, a lost or refused connection, a Galera node not ready. Longer outages
// are left to the transfer engine's own retries.
type retryPolicy struct {
	attempts int
	wait     time.Duration // doubled after each failure
}

var defaultRetry = retryPolicy{attempts: 4, wait: 500 * time.Millisecond}

// do calls fn (with the attempt number, from 1) until it succeeds, fails for good, or
// ctx ends; it returns fn's last error.
func (p retryPolicy) do(ctx context.Context, fn func(attempt int) error) error {
	wait := p.wait
	for attempt := 1; ; attempt++ {
		err := fn(attempt)
		if err == nil || attempt >= p.attempts || ctx.Err() != nil || !retryable(err) {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait *= 2
	}
}

// MariaDB error numbers that are worth a retry of the whole transaction.
const (
	erLockWaitTimeout = 1205
	// Galera: "WSREP has not yet prepared node for application use" (wsrep_ready=OFF).
	erWsrepNotReady = 1047
	// Galera: "Got error 6 during COMMIT" and the like, the node having lost the primary
	// component while the transaction ran; it was rolled back.
	erErrorDuringCommit = 1180
	erLockDeadlock      = 1213
	erServerShutdown    = 1053
	erConnectionKilled  = 1927
	crServerGone        = 2006
	crServerLost        = 2013
)

// retryable reports errors after which the transaction was rolled back by the server or
// never reached it, so running it again is safe.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erLockWaitTimeout, erLockDeadlock, erWsrepNotReady, erErrorDuringCommit, erServerShutdown, erConnectionKilled, crServerGone, crServerLost:
			return true
		}
		return false
	}
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}
