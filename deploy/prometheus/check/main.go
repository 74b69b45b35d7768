// Command check parses Prometheus rule files with Prometheus's own rule
// loader (model/rulefmt, the code `promtool check rules` and the server run):
// YAML structure, PromQL of every expr, label names and annotation templates.
//
//	go run . ../strait-alerts.yml
//
// It prints "SUCCESS: N rules found" per file, or every error and exits 1.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: check RULE_FILE...")
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	failed := false
	for _, f := range os.Args[1:] {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, logger)
		if len(errs) > 0 {
			failed = true
			fmt.Printf("FAILED: %s\n", f)
			for _, e := range errs {
				fmt.Printf("  %v\n", e)
			}
			continue
		}
		n := 0
		for _, g := range groups.Groups {
			n += len(g.Rules)
		}
		fmt.Printf("SUCCESS: %d rules found in %s\n", n, f)
	}
	if failed {
		os.Exit(1)
	}
}
