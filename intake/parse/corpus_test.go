package parse

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files from the parser's output")

// corpus lists the .eml files of testdata/mail.
func corpus(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "mail", "*.eml"))
	if err != nil || len(files) < 40 {
		t.Fatalf("the corpus needs at least 40 emails, found %d (%v)", len(files), err)
	}
	return files
}

// TestCorpus parses every email of the corpus and compares the summary,
// exactly as `keydesk parse --json` prints it, with its golden file; the
// file name's prefix says the verdict a person expects.
func TestCorpus(t *testing.T) {
	for _, path := range corpus(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			res, err := Parse(f, testOptions())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want, _, _ := strings.Cut(name, "-")
			if string(res.Verdict) != want {
				t.Errorf("verdict %s, the file name says %s (reasons %v, warnings %v)", res.Verdict, want, res.Reasons, res.Warnings)
			}
			got, err := res.Summary(filepath.Base(path)).JSONLine()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./intake/parse -run TestCorpus -update)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("summary differs from %s\n got: %s\nwant: %s", golden, got, exp)
			}
		})
	}
}
