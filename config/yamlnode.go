package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// secretNames are the keys whose value may come from "<name>_file" instead.
var secretNames = map[string]bool{
	"password": true, "passphrase": true, "api_key": true, "api_secret": true,
	"token": true, "client_secret": true,
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// prepare rewrites a parsed YAML tree before it is decoded: ${VAR} in every
// scalar value is expanded from the environment (after parsing, so that a
// variable's value can never change the document's structure), and every
// secret "<name>_file" is replaced by "<name>" holding the file's content.
// Problems are collected with the path of the key they concern.
func prepare(file, dir string, n *yaml.Node, path string, getenv func(string) string, errs *[]error) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			prepare(file, dir, c, path, getenv, errs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			prepare(file, dir, c, fmt.Sprintf("%s[%d]", path, i), getenv, errs)
		}
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			seen[n.Content[i].Value] = true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			prepare(file, dir, v, kp, getenv, errs)
			name, isFile := strings.CutSuffix(k.Value, "_file")
			if !isFile || !secretNames[name] || v.Kind != yaml.ScalarNode {
				continue
			}
			if seen[name] {
				*errs = append(*errs, fmt.Errorf("%s: %s: give either %s or %s, not both", file, kp, name, k.Value))
				continue
			}
			p := v.Value
			if p == "" {
				// An empty "<name>_file" (say "${VAR:-}" with VAR unset)
				// gives no secret, as an absent key does: a role that is
				// not given the file runs without the secret.
				k.Value = name
				v.Tag = "!!str"
				continue
			}
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("%s: %s: %w", file, kp, err))
				continue
			}
			k.Value = name
			v.Value = strings.TrimRight(string(b), "\r\n")
			v.Tag = "!!str"
			v.Style = yaml.DoubleQuotedStyle
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = varRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := varRE.FindStringSubmatch(m)
			if v := getenv(sub[1]); v != "" {
				return v
			}
			if sub[2] != "" {
				return sub[3]
			}
			*errs = append(*errs, fmt.Errorf("%s: %s: environment variable %s is not set", file, path, sub[1]))
			return ""
		})
		// An expanded value is data, never YAML: keep it a string unless
		// the field's type asks otherwise.
		if n.Tag == "" || n.Tag == "!!null" {
			n.Tag = "!!str"
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode parses data as YAML into out, strictly: an unknown key is an error
// that names it, so a typo never silently falls back to a default.
func decode(file, dir string, data []byte, out any, getenv func(string) string) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(root.Content) == 0 {
		return nil
	}
	var errs []error
	prepare(file, dir, &root, "", getenv, &errs)
	checkKnown(file, root.Content[0], reflect.TypeOf(out), "", &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := root.Decode(out); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// checkKnown reports every mapping key that has no field in t.
func checkKnown(file string, n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s: %s: unknown key (line %d); see the README for the keys", file, join(path, k.Value), k.Line))
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
