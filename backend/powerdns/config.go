package powerdns

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dnsagent/dnsagent/option"
)

// Defaults of the [agent:powerdns] options. The connection defaults are gmysql's own
// (pdns_server --no-config --launch=gmysql --config=default), so an operator can copy
// the values from the gmysql-* lines of pdns.conf.
const (
	DefaultHost        = "127.0.0.1"
	DefaultPort        = 3306
	DefaultUser        = "powerdns"
	DefaultDBName      = "powerdns"
	DefaultAccount     = "dnsagent"
	DefaultZoneKind    = "NATIVE"
	DefaultPDNSControl = "pdns_control"
	DefaultPDNSUtil    = "pdnsutil"
	DefaultBatchSize   = 1000
	DefaultFailback    = time.Minute

	// maxAccountLen is domains.account VARCHAR(40).
	maxAccountLen = 40
)

// Config is the powerdns backend's configuration.
type Config struct {
	// DSN is a go-sql-driver/mysql data source name
	// ("user:password@tcp(host:3306)/dbname"). When it is set, the separate connection
	// options must be left empty.
	DSN string
	// DSNs are several data source names (dsn lists them separated by whitespace), or
	// Hosts several host:port of one database: the nodes of a Galera cluster (nodes.go).
	DSNs  []string
	Hosts []string
	// Failback is how long the agent stays away from the first node after it failed.
	Failback time.Duration
	// Host and Port, or Socket (a unix socket path, which wins), User, Password, DBName.
	Host     string
	Port     int
	Socket   string
	User     string
	Password string
	DBName   string

	// Account marks the agent's zones in domains.account; zones with another account
	// are never listed, changed or deleted.
	Account string
	// ZoneKind is domains.type of new zones: NATIVE, or MASTER so that PowerDNS itself
	// sends NOTIFY to its own secondaries.
	ZoneKind string

	// PDNSControlEnabled runs PDNSControl after every commit: "purge ZONE$" always,
	// "rediscover" after a create or delete, because PowerDNS (>= 4.5) caches its zone
	// list for zone-cache-refresh-interval (300 s) and Designate stops polling sooner.
	PDNSControlEnabled bool
	// PDNSControl is the pdns_control command, split at whitespace (no quoting).
	PDNSControl []string
	// PDNSSocketDir, when set, is passed as --socket-dir.
	PDNSSocketDir string

	// BatchSize is the number of rows per multi-row INSERT.
	BatchSize int

	// NameIndex adds (once, when missing) a virtual column of reversed owner names and
	// its index to the records table, so an incremental change finds out which empty
	// non-terminals are still needed in O(change) instead of scanning the zone's rows.
	NameIndex bool

	// DNSSEC runs PDNSUtil rectify-zone once per change, so ordername and the empty
	// non-terminals are what PowerDNS's signer expects for NSEC and NSEC3 alike.
	DNSSEC bool
	// PDNSUtil is the pdnsutil command, split at whitespace (for --config-dir).
	PDNSUtil []string
}

// ConfigFrom reads the options of an [agent:NAME] section. Bad values are recorded in the
// section's file, which reports them all at once.
func ConfigFrom(s option.Reader) Config {
	return Config{
		DSN:                s.String("dsn", ""),
		Hosts:              s.List("hosts"),
		Failback:           s.Seconds("failback", DefaultFailback),
		Host:               s.String("host", ""),
		Port:               s.Int("port", 0, 1),
		Socket:             s.String("socket", ""),
		User:               s.String("user", ""),
		Password:           s.String("password", ""),
		DBName:             s.String("dbname", ""),
		Account:            s.String("account", DefaultAccount),
		ZoneKind:           strings.ToUpper(s.String("zone_kind", DefaultZoneKind)),
		PDNSControlEnabled: s.Bool("pdns_control_enabled", true),
		PDNSControl:        strings.Fields(s.String("pdns_control", DefaultPDNSControl)),
		PDNSSocketDir:      s.String("pdns_socket_dir", ""),
		BatchSize:          s.Int("batch_size", DefaultBatchSize, 1),
		NameIndex:          s.Bool("name_index", true),
		DNSSEC:             s.Bool("dnssec", false),
		PDNSUtil:           strings.Fields(s.String("pdnsutil", DefaultPDNSUtil)),
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs option.Errors
	if len(c.Hosts) > 0 && (c.Host != "" || c.Socket != "" || c.DSN != "") {
		errs.Add("hosts", "set either hosts or host/socket/dsn, not both")
	}
	for _, h := range c.Hosts {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			errs.Add("hosts", "%q is not host:port", h)
		}
	}
	if c.DSN != "" {
		if c.Host != "" || c.Port != 0 || c.Socket != "" || c.User != "" || c.Password != "" || c.DBName != "" {
			errs.Add("dsn", "set either dsn or host/port/socket/user/password/dbname, not both")
		}
		for i, dsn := range strings.Fields(c.DSN) {
			if _, err := mysql.ParseDSN(dsn); err != nil {
				// The driver's message may quote the DSN, password included: say only where.
				errs.Add("dsn", "not a valid go-sql-driver/mysql data source name (user:password@tcp(host:port)/dbname): item %d", i+1)
			}
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		errs.Add("port", "%d is not a TCP port", c.Port)
	}
	if c.Account == "" || len(c.Account) > maxAccountLen {
		errs.Add("account", "%q must have 1 to %d characters (domains.account)", c.Account, maxAccountLen)
	}
	if c.ZoneKind != "NATIVE" && c.ZoneKind != "MASTER" {
		errs.Add("zone_kind", "%q is neither NATIVE nor MASTER", c.ZoneKind)
	}
	if c.PDNSControlEnabled && len(c.PDNSControl) == 0 {
		errs.Add("pdns_control", "must name a command while pdns_control_enabled is true")
	}
	if c.DNSSEC && len(c.PDNSUtil) == 0 {
		errs.Add("pdnsutil", "must name a command while dnssec is true")
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		errs.Add("batch_size", "%d is outside 1..100000", c.BatchSize)
	}
	return errs.Err()
}

// mysqlConfigs are the driver configurations of the nodes: the DSNs, or one per host
// (one in all without hosts) built from the options.
func (c Config) mysqlConfigs() ([]*mysql.Config, error) {
	var out []*mysql.Config
	for _, dsn := range strings.Fields(c.DSN) {
		mc, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, errors.New("dsn: not a valid data source name")
		}
		out = append(out, tune(mc))
	}
	if c.DSN != "" {
		return out, nil
	}
	for _, h := range c.Hosts {
		mc, err := c.mysqlConfig()
		if err != nil {
			return nil, err
		}
		mc.Net, mc.Addr = "tcp", h
		out = append(out, mc)
	}
	if len(out) > 0 {
		return out, nil
	}
	mc, err := c.mysqlConfig()
	return []*mysql.Config{mc}, err
}

// mysqlConfig is the driver configuration built from the options.
func (c Config) mysqlConfig() (*mysql.Config, error) {
	var mc *mysql.Config
	{
		mc = mysql.NewConfig()
		mc.User = or(c.User, DefaultUser)
		mc.Passwd = c.Password
		mc.DBName = or(c.DBName, DefaultDBName)
		if c.Socket != "" {
			mc.Net, mc.Addr = "unix", c.Socket
		} else {
			port := c.Port
			if port == 0 {
				port = DefaultPort
			}
			mc.Net, mc.Addr = "tcp", net.JoinHostPort(or(c.Host, DefaultHost), strconv.Itoa(port))
		}
	}
	return tune(mc), nil
}

// DefaultIOTimeout bounds each read from and write to the database unless the DSN sets
// readTimeout/writeTimeout.
const DefaultIOTimeout = 2 * time.Minute

func tune(mc *mysql.Config) *mysql.Config {
	// Multi-row INSERTs with thousands of values: interpolating them client-side saves the
	// prepare round trip per batch (the driver escapes every value).
	mc.InterpolateParams = true
	if mc.Timeout == 0 {
		mc.Timeout = 10 * time.Second // gmysql-timeout's default
	}
	// A server that stops answering without closing the connection (a partition, a frozen
	// node) fails the statement after this long instead of holding a transfer worker
	// forever; generous, as one commit of a large replace on a cluster can take seconds.
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = DefaultIOTimeout
	}
	if mc.WriteTimeout == 0 {
		mc.WriteTimeout = DefaultIOTimeout
	}
	// The driver logs lost connections itself; we return them as errors and retry.
	mc.Logger = mysql.Logger(discardLogger{})
	return mc
}

type discardLogger struct{}

func (discardLogger) Print(...any) {}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
