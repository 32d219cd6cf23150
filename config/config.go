// Package config reads the agent's INI file (Designate style, one `[service:agent]` section
// and one `[agent:NAME]` section per backend) with environment overrides, and turns values
// into typed settings. Every problem is reported with its section and option, and all of
// them are reported at once.
package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
	"gopkg.in/ini.v1"

	"github.com/dnsagent/dnsagent/option"
)

// EnvPrefix starts every environment override: option listen of [service:agent] is
// DNSAGENT_SERVICE_AGENT_LISTEN.
const EnvPrefix = "DNSAGENT"

// File is a loaded configuration. It remembers every error and every option read, so
// Err can report bad values and options nobody knows (typos) together.
type File struct {
	ini      *ini.File
	env      *viper.Viper
	set      map[string]string // --set overrides: "section.option" to value
	errs     []error
	sections map[string]*Section
}

// Set overrides options, above the environment and the file, with items written
// SECTION.OPTION=VALUE (the command line's --set service:agent.listen=127.0.0.1:5358).
// An item that is not of that form is an error; one naming an option nobody reads is
// reported by Err, as an unknown option in the file is.
func (f *File) Set(items []string) error {
	for _, item := range items {
		key, value, ok := strings.Cut(item, "=")
		dot := strings.LastIndex(key, ".")
		if !ok || dot <= 0 || dot == len(key)-1 {
			return fmt.Errorf("--set %q: write SECTION.OPTION=VALUE, e.g. service:agent.listen=127.0.0.1:5358", item)
		}
		if f.set == nil {
			f.set = map[string]string{}
		}
		section, name := strings.TrimSpace(key[:dot]), strings.ReplaceAll(strings.TrimSpace(key[dot+1:]), "-", "_")
		f.set[strings.ToLower(section+"."+name)] = strings.TrimSpace(value)
	}
	return nil
}

// Load reads path; an empty path means "no file": built-in defaults and the environment.
func Load(path string) (*File, error) {
	// oslo.config does not treat ';' or '#' inside a value as a comment, and passwords and
	// commands contain them: only a comment led by whitespace ends a value.
	opts := ini.LoadOptions{SpaceBeforeInlineComment: true, Insensitive: true}
	var (
		data *ini.File
		err  error
	)
	if path == "" {
		data = ini.Empty(opts)
	} else {
		data, err = ini.LoadSources(opts, path)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return newFile(data), nil
}

// Parse reads configuration from text, for tests and embedded samples.
func Parse(text string) (*File, error) {
	data, err := ini.LoadSources(ini.LoadOptions{SpaceBeforeInlineComment: true, Insensitive: true}, []byte(text))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return newFile(data), nil
}

func newFile(data *ini.File) *File {
	env := viper.New()
	env.SetEnvPrefix(EnvPrefix)
	env.SetEnvKeyReplacer(strings.NewReplacer(":", "_", ".", "_", "-", "_"))
	env.AutomaticEnv()
	return &File{ini: data, env: env, sections: map[string]*Section{}}
}

// Section returns the section called name, or the first alias present in the file
// (`[agent:file]` is also read as `[backend:agent:file]`). Messages and environment
// overrides always use name.
func (f *File) Section(name string, aliases ...string) *Section {
	if s, ok := f.sections[name]; ok {
		return s
	}
	s := &Section{file: f, name: name, read: map[string]bool{}, reported: map[string]bool{}}
	for _, n := range append([]string{name}, aliases...) {
		if f.ini.HasSection(n) {
			s.data = f.ini.Section(n)
			break
		}
	}
	f.sections[name] = s
	return s
}

// Err reports every bad value read so far and every option of a read section that no
// code asked for, or nil.
func (f *File) Err() error {
	errs := append([]error(nil), f.errs...)
	names := make([]string, 0, len(f.sections))
	for name := range f.sections {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := f.sections[name]
		if s.data == nil {
			continue
		}
		for _, key := range s.data.KeyStrings() {
			name := strings.ReplaceAll(key, "-", "_")
			switch {
			case !s.read[name]:
				errs = append(errs, &option.Error{Section: s.data.Name(), Option: key, Problem: "unknown option"})
			case name != key && s.data.HasKey(name):
				errs = append(errs, &option.Error{Section: s.data.Name(), Option: key, Problem: "set twice, also as " + name + ": keep one"})
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(f.set)) {
		section, name := key[:strings.LastIndex(key, ".")], key[strings.LastIndex(key, ".")+1:]
		if s := f.sections[section]; s == nil || !s.read[name] {
			errs = append(errs, fmt.Errorf("--set %s: unknown option", key))
		}
	}
	return errors.Join(errs...)
}

// Section reads typed options of one INI section. A getter that meets a bad value records
// an error naming section and option and returns the default, so loading continues and
// reports everything at once.
type Section struct {
	file     *File
	name     string
	data     *ini.Section
	read     map[string]bool
	reported map[string]bool // options with a problem recorded
}

var _ option.Reader = (*Section)(nil)

// Name is the section's canonical name.
func (s *Section) Name() string { return s.name }

// Errorf records a problem with option key.
func (s *Section) Errorf(key, format string, args ...any) {
	s.reported[key] = true
	s.file.errs = append(s.file.errs, &option.Error{Section: s.name, Option: key, Problem: fmt.Sprintf(format, args...)})
}

// Check records the field errors a component's Validate returned for this section. An
// option whose value already has a problem recorded is not reported again: a value that
// could not be read (and was dropped) makes the checks of what was read fail too, and
// that is one mistake. Check tells whether err held any problem.
func (s *Section) Check(err error) bool {
	for _, fe := range option.Fields(err) {
		if fe.Option == "" {
			s.file.errs = append(s.file.errs, fmt.Errorf("[%s] %s", s.name, fe.Problem))
		} else if !s.reported[fe.Option] {
			s.Errorf(fe.Option, "%s", fe.Problem)
		}
	}
	return err != nil
}

// lookup returns the raw value: the environment first, then the file.
func (s *Section) lookup(key string) (string, bool) {
	s.read[key] = true
	envKey := s.name + "." + key
	if v, ok := s.file.set[envKey]; ok {
		return v, true
	}
	if s.file.env.IsSet(envKey) {
		return s.file.env.GetString(envKey), true
	}
	if s.data != nil {
		// oslo.config takes rndc-host for rndc_host, and Designate's own samples write
		// options with dashes: a copied section must mean the same here.
		for _, k := range []string{key, strings.ReplaceAll(key, "_", "-")} {
			if s.data.HasKey(k) {
				return s.data.Key(k).String(), true
			}
		}
	}
	return "", false
}

// String returns the option's value, trimmed, or def when it is absent.
func (s *Section) String(key, def string) string {
	if v, ok := s.lookup(key); ok {
		return strings.TrimSpace(v)
	}
	return def
}

// List returns the comma-separated items of the option, trimmed, without empty items.
func (s *Section) List(key string) []string {
	var items []string
	for _, item := range strings.Split(s.String(key, ""), ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// Int returns an integer option that must be at least min.
func (s *Section) Int(key string, def, min int) int {
	v := s.String(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		s.Errorf(key, "%q is not an integer", v)
		return def
	}
	if n < min {
		s.Errorf(key, "%d is below the minimum %d", n, min)
		return def
	}
	return n
}

// Bool returns a boolean option (true/false, yes/no, on/off, 1/0).
func (s *Section) Bool(key string, def bool) bool {
	v := strings.ToLower(s.String(key, ""))
	switch v {
	case "":
		return def
	case "true", "yes", "on", "1":
		return true
	case "false", "no", "off", "0":
		return false
	}
	s.Errorf(key, "%q is not a boolean (use true or false)", v)
	return def
}

// Seconds returns a non-negative duration written as seconds ("0.5", "20", as Designate
// does) or as a Go duration ("500ms").
func (s *Section) Seconds(key string, def time.Duration) time.Duration {
	v := s.String(key, "")
	if v == "" {
		return def
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f > 1e6 {
			s.Errorf(key, "%q seconds is out of range", v)
			return def
		}
		return time.Duration(f * float64(time.Second))
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		s.Errorf(key, "%q is not a number of seconds or a duration like 500ms", v)
		return def
	}
	return d
}

// FileMode returns an octal permission such as 0644.
func (s *Section) FileMode(key string, def os.FileMode) os.FileMode {
	v := s.String(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		s.Errorf(key, "%q is not an octal file mode such as 0644", v)
		return def
	}
	return os.FileMode(n)
}
