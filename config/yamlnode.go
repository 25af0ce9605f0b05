package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/buildmarkets/keydesk"
)

// secretNames are the keys whose value may come from "<name>_file" instead.
var secretNames = map[string]bool{
	"password": true, "passphrase": true, "api_key": true, "api_secret": true,
	"token": true, "client_secret": true, "webhook_url": true,
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// preparer rewrites a parsed YAML tree before it is decoded: ${VAR} in
// every scalar value is expanded from the environment (after parsing, so
// that a variable's value can never change the document's structure), and
// every secret "<name>_file" is replaced by "<name>" holding the file's
// content. Problems are collected with the path of the key they concern.
type preparer struct {
	file, dir string
	getenv    func(string) string
	// optional says which keys may name an unset variable without it being
	// a problem here: their absence is checked by whoever needs them (the
	// partners' credentials, by CheckCredentials for the batch role).
	optional func(path string) bool
	errs     []error
}

func (pr *preparer) bad(path, format string, args ...any) {
	pr.errs = append(pr.errs, fmt.Errorf("%s: %s: %s", pr.file, path, fmt.Sprintf(format, args...)))
}

func (pr *preparer) prepare(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			pr.prepare(c, path)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			pr.prepare(c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			seen[n.Content[i].Value] = true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			pr.prepare(v, kp)
			name, isFile := strings.CutSuffix(k.Value, "_file")
			if !isFile || !secretNames[name] || v.Kind != yaml.ScalarNode {
				continue
			}
			if seen[name] {
				pr.bad(kp, "give either %s or %s, not both", name, k.Value)
				continue
			}
			pr.readSecretFile(k, v, kp, name)
		}
	case yaml.ScalarNode:
		pr.expand(n, path)
	}
}

// readSecretFile turns "<name>_file: path" into "<name>: content". The key
// is renamed even when the file cannot be read, so that the one problem
// (the file) is reported once and not again as an unknown key.
func (pr *preparer) readSecretFile(k, v *yaml.Node, kp, name string) {
	p := v.Value
	k.Value = name
	v.Value, v.Tag, v.Style = "", "!!str", yaml.DoubleQuotedStyle
	if p == "" {
		// An empty "<name>_file" (say "${VAR:-}" with VAR unset) gives no
		// secret, as an absent key does: a role that is not given the
		// file runs without the secret.
		return
	}
	b, err := readSecret(p, pr.dir, pr.getenv(credentialsDirEnv))
	if err != nil {
		pr.bad(kp, "%v", err)
		return
	}
	v.Value = strings.TrimRight(string(b), "\r\n")
	clear(b)
}

// expand replaces ${VAR} and ${VAR:-default} in a scalar.
func (pr *preparer) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	n.Value = varRE.ReplaceAllStringFunc(n.Value, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		if v := pr.getenv(sub[1]); v != "" {
			return v
		}
		if sub[2] != "" {
			return sub[3]
		}
		if pr.optional == nil || !pr.optional(path) {
			pr.bad(path, "environment variable %s is not set: set it, or write ${%s:-} where it may be empty", sub[1], sub[1])
		}
		return ""
	})
	// An expanded value is data, never YAML: keep it a string unless the
	// field's type asks otherwise.
	if n.Tag == "" || n.Tag == "!!null" {
		n.Tag = "!!str"
	}
}

// unsetVars lists the variables that raw (a value as written, before
// expansion) names and getenv does not set.
func unsetVars(raw string, getenv func(string) string) []string {
	var out []string
	for _, m := range varRE.FindAllStringSubmatch(raw, -1) {
		if getenv(m[1]) == "" && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode parses data as YAML into out, strictly: an unknown key is an
// error that names it, so a typo never silently falls back to a default.
// Every problem is returned, joined. decoded reports whether out was filled
// in (everything but a syntax error): with problems in some keys, the rest
// are still decoded, so that the caller can go on to find every problem at
// once.
func decode(file, dir string, data []byte, out any, getenv func(string) string, optional func(string) bool) (decoded bool, _ error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	if len(root.Content) == 0 {
		return true, nil
	}
	pr := &preparer{file: file, dir: dir, getenv: getenv, optional: optional}
	pr.prepare(&root, "")
	checkKnown(file, root.Content[0], reflect.TypeOf(out), "", &pr.errs)
	// A non-strict decode skips the unknown keys just reported.
	if err := root.Decode(out); err != nil {
		pr.errs = append(pr.errs, fmt.Errorf("%s: %w", file, err))
	}
	return true, errors.Join(pr.errs...)
}

var durationType = reflect.TypeOf(time.Duration(0))

// days reads a whole number of days written "365d" (at most 100 years).
func days(s string) (time.Duration, bool) {
	n, ok := strings.CutSuffix(strings.TrimSpace(s), "d")
	if !ok || n == "" || len(n) > 5 {
		return 0, false
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 0 || v > 36500 {
		return 0, false
	}
	return time.Duration(v) * 24 * time.Hour, true
}

// checkKnown reports every mapping key that has no field in t, with the
// nearest known key of that mapping when one is close enough to be a typo.
func checkKnown(file string, n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType && n.Kind == yaml.ScalarNode:
		if d, ok := days(n.Value); ok {
			// Days, as rotation periods are written: the decoder knows
			// hours only.
			n.Value = d.String()
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %s: %q is not a duration (line %d): write it like 90s, 45m, 4h or 30d", file, path, n.Value, n.Line))
			// Reported here with its key: the decoder, which would report
			// it again by line only, sees no value and the default applies.
			n.Value, n.Tag = "0s", "!!str"
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				hint := "see the README for the keys"
				if near := keydesk.Nearest(k.Value, knownKeys(fields)); near != "" {
					hint = "did you mean " + near + "?"
				}
				*errs = append(*errs, fmt.Errorf("%s: %s: unknown key (line %d); %s", file, join(path, k.Value), k.Line, hint))
				continue
			}
			checkKnown(file, n.Content[i+1], ft, join(path, k.Value), errs)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKnown(file, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			checkKnown(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

// knownKeys are the keys a mapping may hold: its fields, and "<name>_file"
// for each secret among them; sorted, so that a suggestion is stable.
func knownKeys(fields map[string]reflect.Type) []string {
	keys := slices.Sorted(maps.Keys(fields))
	for _, k := range keys {
		if secretNames[k] {
			keys = append(keys, k+"_file")
		}
	}
	return keys
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		name := tag[0]
		if name == "-" || !f.IsExported() {
			continue
		}
		if slices.Contains(tag[1:], "inline") {
			maps.Copy(m, yamlFields(f.Type))
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}
