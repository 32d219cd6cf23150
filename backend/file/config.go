package file

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend/zonefile"
	"github.com/dnsagent/dnsagent/option"
)

// Defaults of the [agent:NAME] options.
const (
	DefaultZoneFilePath   = "/var/lib/dnsagent/zones"
	DefaultFileMode       = os.FileMode(0o644)
	DefaultCommandTimeout = 10 * time.Second
)

// Config is the file backend's configuration.
type Config struct {
	// ZoneFilePath is the directory holding <zone>.zone files.
	ZoneFilePath string
	// FileMode is given to every zone file before it is renamed into place, so the DNS
	// server's user can read it (os.CreateTemp makes 0600 files).
	FileMode os.FileMode
	// FileGroup, when set, is the group name or numeric gid given to zone files.
	FileGroup string
	// ReloadCommand and DeleteCommand are argv lists, split when the configuration is
	// read; {zone} and {file} in an argument are replaced when the command runs.
	ReloadCommand []string
	DeleteCommand []string
	// CommandTimeout bounds each run of a command.
	CommandTimeout time.Duration
}

// ConfigFrom reads the options of an [agent:NAME] section. Bad values are recorded in the
// section's file, which reports them all at once.
func ConfigFrom(s option.Reader) Config {
	return Config{
		ZoneFilePath:   s.String("zone_file_path", DefaultZoneFilePath),
		FileMode:       s.FileMode("file_mode", DefaultFileMode),
		FileGroup:      s.String("file_group", ""),
		ReloadCommand:  commandOption(s, "reload_command"),
		DeleteCommand:  commandOption(s, "delete_command"),
		CommandTimeout: s.Seconds("command_timeout", DefaultCommandTimeout),
	}
}

func commandOption(s option.Reader, key string) []string {
	argv, err := splitCommand(s.String(key, ""))
	if err != nil {
		s.Errorf(key, "%v", err)
		return nil
	}
	return argv
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs option.Errors
	if c.ZoneFilePath == "" {
		errs.Add("zone_file_path", "must not be empty")
	}
	if c.FileMode&^os.ModePerm != 0 {
		errs.Add("file_mode", "%o has bits beyond the permissions", c.FileMode)
	}
	if _, err := zonefile.LookupGroup(c.FileGroup); err != nil {
		errs.Add("file_group", "%v", err)
	}
	if (len(c.ReloadCommand) > 0 || len(c.DeleteCommand) > 0) && c.CommandTimeout <= 0 {
		errs.Add("command_timeout", "must be positive when a command is set")
	}
	if len(c.ReloadCommand) > 0 && c.ReloadCommand[0] == "" {
		errs.Add("reload_command", "the program name is empty")
	}
	if len(c.DeleteCommand) > 0 && c.DeleteCommand[0] == "" {
		errs.Add("delete_command", "the program name is empty")
	}
	return errs.Err()
}

// splitCommand splits a command line into argv the way a POSIX shell splits words, and
// nothing more: whitespace separates arguments, single quotes keep text literally, double
// quotes keep whitespace and allow \" and \\, and a backslash outside quotes escapes the
// next character. No expansion of any kind happens, and the command never runs through a
// shell, so zone text substituted later cannot become shell syntax.
func splitCommand(line string) ([]string, error) {
	var (
		argv    []string
		word    strings.Builder
		inWord  bool // a word is open, possibly empty ("")
		quote   rune // the open quote, or 0
		escaped bool
	)
	for _, c := range line {
		switch {
		case escaped:
			if quote == '"' && c != '"' && c != '\\' {
				word.WriteRune('\\')
			}
			word.WriteRune(c)
			escaped = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				word.WriteRune(c)
			}
		case c == '\\':
			escaped, inWord = true, true
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				word.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				argv = append(argv, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(c)
			inWord = true
		}
	}
	switch {
	case escaped:
		return nil, fmt.Errorf("%q ends with a lone backslash", line)
	case quote != 0:
		return nil, fmt.Errorf("%q has an unterminated %c quote", line, quote)
	}
	if inWord {
		argv = append(argv, word.String())
	}
	return argv, nil
}
