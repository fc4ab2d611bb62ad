package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfig layers the configuration of the running command, lowest to
// highest: the flag's default, the config file, SMTPLOG_* environment
// variables, the command line. Keys in the config file are long flag names
// (dashes or underscores); a key that no smtplog command knows is an error,
// a key that another command knows is ignored by this one. Environment
// variables are SMTPLOG_ plus the flag name in upper case with dashes as
// underscores (SMTPLOG_UPSTREAM_TLS).
func applyConfig(cmd *cobra.Command, e *env) error {
	flags := cmd.Flags()
	known := allFlagNames(cmd.Root())

	path, _ := flags.GetString("config")
	if !flags.Changed("config") {
		if v := e.getenv("SMTPLOG_CONFIG"); v != "" {
			path = v
		}
	}
	fileValues := map[string][]string{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		fileValues, err = parseConfig(data, known)
		if err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}

	var errs []string
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		envName := "SMTPLOG_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := e.getenv(envName); v != "" {
			vals := []string{v}
			if isSlice(f) {
				vals = strings.Split(v, ",")
			}
			for _, x := range vals {
				if err := flags.Set(f.Name, strings.TrimSpace(x)); err != nil {
					errs = append(errs, fmt.Sprintf("%s: %v", envName, err))
				}
			}
			return
		}
		if vals, ok := fileValues[f.Name]; ok {
			for _, x := range vals {
				if err := flags.Set(f.Name, x); err != nil {
					errs = append(errs, fmt.Sprintf("config key %s: %v", f.Name, err))
				}
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func isSlice(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array")
}

// parseConfig decodes a YAML mapping of flag names to scalars or lists of
// scalars. Unknown keys are an error naming the key and its line.
func parseConfig(data []byte, known map[string]bool) (map[string][]string, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return map[string][]string{}, nil
		}
		return nil, err
	}
	if len(doc.Content) == 0 {
		return map[string][]string{}, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the top level must be a mapping of option names to values", m.Line)
	}
	out := map[string][]string{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := strings.ReplaceAll(k.Value, "_", "-")
		if !known[name] {
			return nil, fmt.Errorf("line %d: unknown key %q (known: %s)", k.Line, k.Value, strings.Join(sortedKeys(known), ", "))
		}
		switch v.Kind {
		case yaml.ScalarNode:
			out[name] = []string{v.Value}
		case yaml.SequenceNode:
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: %s: list items must be plain values", it.Line, k.Value)
				}
				out[name] = append(out[name], it.Value)
			}
		default:
			return nil, fmt.Errorf("line %d: %s: expected a value or a list of values", v.Line, k.Value)
		}
	}
	return out, nil
}

func allFlagNames(root *cobra.Command) map[string]bool {
	names := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	delete(names, "help")
	delete(names, "config")
	return names
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
