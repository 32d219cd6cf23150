package bind9

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend/zonefile"
	"github.com/dnsagent/dnsagent/option"
	"github.com/dnsagent/dnsagent/tsigkey"
)

// Defaults of the [agent:bind9] options.
const (
	DefaultRNDCHost     = "127.0.0.1"
	DefaultRNDCPort     = 953
	DefaultRNDCTimeout  = 10 * time.Second
	DefaultRNDCBinary   = "rndc"
	DefaultRNDCKeyFile  = "/etc/bind/rndc.key" // rndc's own fallback (Debian's path)
	DefaultZoneFilePath = "/var/lib/bind/dnsagent"
	DefaultFileMode     = os.FileMode(0o644)
)

// Update modes: how a changed zone reaches named.
const (
	// ModeReload rewrites the zone file and runs `rndc reload NAME`.
	ModeReload = "reload"
	// ModeUpdate sends incremental changes as signed RFC 2136 UPDATEs; full replaces go
	// through `rndc freeze`, the file, and `rndc thaw`.
	ModeUpdate = "update"
)

// Config is the bind9 backend's configuration, read from [agent:bind9].
type Config struct {
	// RNDCHost and RNDCPort are named's control channel (rndc -s, -p).
	RNDCHost string
	RNDCPort int
	// RNDCConfigFile and RNDCKeyFile are passed to rndc as -c and -k when set.
	RNDCConfigFile string
	RNDCKeyFile    string
	// RNDCTimeout bounds every rndc run, every query and update sent to named, and the
	// wait for named to serve a zone it was told to load.
	RNDCTimeout time.Duration
	// RNDCBinary is the rndc program, looked up on PATH unless it is a path.
	RNDCBinary string
	// RNDCChannel speaks named's control channel protocol directly (channel.go) instead
	// of running RNDCBinary per command, when the key is known: RNDCKeyFile, or
	// DefaultRNDCKeyFile when neither it nor RNDCConfigFile is set.
	RNDCChannel bool
	// ZoneFilePath is the directory of the zone files the agent writes; a zone whose file
	// (rndc showzone) lies elsewhere is not the agent's. named must be able to read it,
	// and in update mode write it (journals, and the dump `rndc freeze` makes).
	ZoneFilePath string
	// FileMode and FileGroup are given to zone files before they are renamed into place,
	// so named's user can read them.
	FileMode  os.FileMode
	FileGroup string
	// QueryDestination is named's DNS address (host:port): SOA queries, and UPDATEs.
	QueryDestination string
	// View, when set, is the view zones are added to (addzone NAME in VIEW).
	View string
	// ZoneConfig is appended inside the braces of every addzone, e.g.
	// `also-notify { 192.0.2.1; }; allow-transfer { none; };`.
	ZoneConfig string
	// UpdateMode is ModeReload or ModeUpdate.
	UpdateMode string
	// UpdateKey signs UPDATEs and is granted the zone in its update-policy; named.conf
	// must define the same key. Required in update mode.
	UpdateKey *tsigkey.Key
}

// ConfigFrom reads the options of an [agent:bind9] section. Bad values are recorded in
// the section's file, which reports them all at once.
func ConfigFrom(s option.Reader) Config {
	return Config{
		RNDCHost:         s.String("rndc_host", DefaultRNDCHost),
		RNDCPort:         s.Int("rndc_port", DefaultRNDCPort, 1),
		RNDCConfigFile:   s.String("rndc_config_file", ""),
		RNDCKeyFile:      s.String("rndc_key_file", ""),
		RNDCTimeout:      s.Seconds("rndc_timeout", DefaultRNDCTimeout),
		RNDCBinary:       s.String("rndc_binary", DefaultRNDCBinary),
		RNDCChannel:      s.Bool("rndc_channel", true),
		ZoneFilePath:     s.String("zone_file_path", DefaultZoneFilePath),
		FileMode:         s.FileMode("file_mode", DefaultFileMode),
		FileGroup:        s.String("file_group", ""),
		QueryDestination: withDefaultPort(s.String("query_destination", "")),
		View:             s.String("view", ""),
		ZoneConfig:       s.String("zone_config", ""),
		UpdateMode:       strings.ToLower(s.String("update_mode", ModeReload)),
		UpdateKey:        s.TSIGKey("update_key"),
	}
}

// Validate reports every problem of the configuration at once. Values that end up in an
// rndc argument or inside named's configuration grammar are held to what they need to
// be, so no option can smuggle in a clause or an rndc flag.
func (c Config) Validate() error {
	var errs option.Errors
	bad := errs.Add
	if c.RNDCHost == "" || strings.HasPrefix(c.RNDCHost, "-") || strings.ContainsAny(c.RNDCHost, " \t\r\n") {
		bad("rndc_host", "%q is not a host name or address", c.RNDCHost)
	}
	if c.RNDCPort < 1 || c.RNDCPort > 65535 {
		bad("rndc_port", "%d is not a port", c.RNDCPort)
	}
	if c.RNDCTimeout <= 0 {
		bad("rndc_timeout", "must be positive")
	}
	if c.RNDCBinary == "" {
		bad("rndc_binary", "must not be empty")
	}
	for _, f := range []struct{ option, path string }{{"rndc_config_file", c.RNDCConfigFile}, {"rndc_key_file", c.RNDCKeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad(f.option, "%v", err)
		}
	}
	if !filepath.IsAbs(c.ZoneFilePath) {
		// named resolves a relative file against its own directory, not ours.
		bad("zone_file_path", "%q must be an absolute path", c.ZoneFilePath)
	} else if strings.ContainsAny(c.ZoneFilePath, "\"\\\r\n") {
		bad("zone_file_path", "%q: quotes, backslashes and line breaks cannot go into named's file clause", c.ZoneFilePath)
	}
	if c.FileMode&^os.ModePerm != 0 {
		bad("file_mode", "%o has bits beyond the permissions", c.FileMode)
	}
	if _, err := zonefile.LookupGroup(c.FileGroup); err != nil {
		bad("file_group", "%v", err)
	}
	if c.QueryDestination == "" {
		bad("query_destination", "required: where named answers SOA queries and updates, as host:port (a bare host: port 53)")
	} else if _, port, err := net.SplitHostPort(c.QueryDestination); err != nil {
		bad("query_destination", "%q: %v", c.QueryDestination, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("query_destination", "%q: bad port", c.QueryDestination)
	}
	if c.View != "" && !isWord(c.View) {
		bad("view", "%q: use letters, digits, '-', '_' and '.'", c.View)
	}
	if err := checkZoneConfig(c.ZoneConfig); err != nil {
		bad("zone_config", "%v", err)
	}
	switch c.UpdateMode {
	case ModeReload:
	case ModeUpdate:
		if c.UpdateKey == nil {
			bad("update_key", "required in update mode: the name of a [tsig:NAME] section named.conf also defines")
		} else if !isWord(strings.TrimSuffix(c.UpdateKey.Name, ".")) {
			bad("update_key", "key name %q: use letters, digits, '-', '_' and '.'", c.UpdateKey.Name)
		}
	default:
		bad("update_mode", "%q: use reload or update", c.UpdateMode)
	}
	return errs.Err()
}

// isWord accepts the names that may stand unquoted or quoted in named.conf and as an
// rndc argument: no quotes, braces, semicolons, spaces, and no leading '-'.
func isWord(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkZoneConfig makes sure the extra clauses stay inside the zone's braces: quotes
// closed, braces balanced, and the last statement terminated. named checks the rest when
// the first zone is added, with a message of its own.
func checkZoneConfig(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	depth, quoted := 0, false
	for _, c := range s {
		switch {
		case c == '\n' || c == '\r':
			return errors.New("must be on one line")
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '{':
			depth++
		case c == '}':
			if depth--; depth < 0 {
				return errors.New("a '}' closes a brace that was not opened")
			}
		}
	}
	switch {
	case quoted:
		return errors.New("unterminated quote")
	case depth != 0:
		return errors.New("unbalanced braces")
	case !strings.HasSuffix(s, ";"):
		return errors.New(`must end with ';' (e.g. "also-notify { 192.0.2.1; };")`)
	}
	return nil
}

// withDefaultPort adds port 53 to a destination written without a port, as Designate's
// agent takes its query_destination: a bare IP its resolver asks on port 53.
func withDefaultPort(dest string) string {
	if addr, err := netip.ParseAddr(strings.Trim(dest, "[]")); err == nil {
		return netip.AddrPortFrom(addr, 53).String()
	}
	if dest != "" && !strings.Contains(dest, ":") {
		return net.JoinHostPort(dest, "53") // a host name
	}
	return dest
}
