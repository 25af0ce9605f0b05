package parse

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOwnSentencesInTemplates keeps the fixed sentences keydesk recognises
// as its own in step with the mail templates: each must still be written
// by one of them.
func TestOwnSentencesInTemplates(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "templates", "mail", "*.tmpl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no mail templates found: %v", err)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.WriteString(strings.ToLower(string(b)))
	}
	for _, s := range ownSentences {
		if !strings.Contains(all.String(), s) {
			t.Errorf("no mail template writes %q any more: update ownSentences", s)
		}
	}
}

// TestOwnEmailsNeverRequests pastes each acknowledgement and rejection
// keydesk writes (the golden files of intake/reply) below a one-word
// reply, without quoting and without a header block, as a client that
// quotes nothing would: it must never read as a request.
func TestOwnEmailsNeverRequests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "reply", "testdata", "*.golden"))
	if err != nil || len(files) < 5 {
		t.Fatalf("the reply golden files are missing: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, body, ok := strings.Cut(string(b), "\n\n")
			if !ok {
				t.Fatal("no body in golden file")
			}
			for _, how := range []string{"pasted", "quoted"} {
				history := body
				if how == "quoted" {
					history = quoteLines(body)
				}
				res, err := Parse(bytes.NewReader(replyEmail("own-"+how, "Gracias", history)), testOptions())
				if err != nil {
					t.Fatal(err)
				}
				if res.Verdict != Review || len(res.Requests) != 1 || res.Requests[0].Label != "" {
					t.Errorf("%s: verdict %s, requests %+v: keydesk's own email was read as a request", how, res.Verdict, res.Requests)
				}
			}
		})
	}
}

// TestFieldWordsEveryLanguage reads a request written with each
// language's field names and environment words.
func TestFieldWordsEveryLanguage(t *testing.T) {
	for _, l := range languages {
		for _, env := range [][]string{l.production, l.sandbox} {
			for _, word := range env {
				t.Run(l.code+"/"+word, func(t *testing.T) {
					text := cap1(l.envName[0]) + ": " + cap1(word) + "\n" + cap1(l.scopesName[0]) + " – accounts:read\n• " + cap1(l.labelName[0]) + " = lbl-" + l.code + "\n"
					ds := readDrafts(strings.Split(text, "\n"), Limits{}.withDefaults())
					if len(ds) != 1 {
						t.Fatalf("%d drafts from %q", len(ds), text)
					}
					prs := validate(ds[0], Limits{}.withDefaults())
					want := envWords[strings.ToLower(word)]
					if len(prs) != 1 || len(prs[0].reasons) > 0 || string(prs[0].env) != want || prs[0].label != "lbl-"+l.code {
						t.Errorf("%q read as %+v, want %s", text, prs, want)
					}
				})
			}
		}
	}
}

// TestLanguageTableDocumented keeps docs/parsing.md in step with the
// language table: each language has its rows there, naming every word.
func TestLanguageTableDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "parsing.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| ") {
			rows = append(rows, l)
		}
	}
	for _, l := range languages {
		var all []string
		for _, ws := range [][]string{l.from, l.date, l.to, l.subject, l.wrote, l.original, l.forwarded, l.fwdSubject,
			l.envName, l.scopesName, l.labelName, l.production, l.sandbox} {
			all = append(all, ws...)
		}
		var doc strings.Builder
		for _, r := range rows {
			if strings.HasPrefix(r, "| "+l.code+" |") {
				doc.WriteString(r)
			}
		}
		for _, w := range all {
			if !strings.Contains(doc.String(), "`"+w+"`") {
				t.Errorf("docs/parsing.md does not list %q for %s", w, l.code)
			}
		}
	}
}
