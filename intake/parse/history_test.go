package parse

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// historyWrappers wrap a text as quoted history under a reply in one
// language, the ways clients write it: an Outlook header block, a
// "-----Original Message-----" separator, an attribution line above
// unquoted text, and "> " quoting. They are built from the language table,
// so every language keydesk knows is covered.
func historyWrappers(l language) map[string]func(text string) string {
	from, date, to, subj := l.from[0], l.date[0], l.to[0], l.subject[0]
	block := fmt.Sprintf("%s: Jane Doe <jane.doe@acme.example>\n%s: 25.11.2026 16:02\n%s: Buildmarkets Partner Support <support@buildmarkets.ai>\n%s: API key request\n",
		cap1(from), cap1(date), cap1(to), cap1(subj))
	wrote := fmt.Sprintf("25.11.2026 16:02, Jane Doe <jane.doe@acme.example> %s:", l.wrote[0])
	return map[string]func(string) string{
		"outlook-block": func(t string) string { return "________________________________\n" + block + "\n" + t },
		"original-mark": func(t string) string { return "-----" + cap1(l.original[0]) + "-----\n" + block + "\n" + t },
		"attribution":   func(t string) string { return wrote + "\n\n" + t },
		"quoted":        func(t string) string { return wrote + "\n" + quoteLines(t) },
		"block-quoted":  func(t string) string { return quoteLines(block + "\n" + t) },
	}
}

func cap1(s string) string {
	for i, r := range s {
		return strings.ToUpper(string(r)) + s[i+len(string(r)):]
	}
	return s
}

func quoteLines(t string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(t, "\n"), "\n") {
		b.WriteString("> " + l + "\n")
	}
	return b.String()
}

// replyEmail is an authenticated partner's plain reply: new text above
// quoted history.
func replyEmail(id, newText, history string) []byte {
	return []byte("Authentication-Results: mx.buildmarkets.ai; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example\r\n" +
		"From: Jane Doe <jane.doe@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: Re: API key request\r\n" +
		"Date: Thu, 26 Nov 2026 10:14:03 +0100\r\nMessage-ID: <" + id + "@acme.example>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		newText + "\r\n\r\n" + strings.ReplaceAll(history, "\n", "\r\n"))
}

// TestQuotedHistoryNeverAccepted is the false-accept guard: every accepted
// email of the corpus, its text quoted as history below a one-line reply
// that states no fields, in every language and every way of quoting, must
// not be accepted with the fields it quotes.
func TestQuotedHistoryNeverAccepted(t *testing.T) {
	newTexts := []string{"Thanks!", "Gracias", "Grazie", "Bedankt", "Obrigado", "Dziękuję", "Tack", "Kiitos", "Děkuji", "ありがとうございます。", "谢谢！"}
	accepted := 0
	for _, path := range corpus(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		if !strings.HasPrefix(name, "accept-") {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := Parse(bytes.NewReader(raw), testOptions())
		if err != nil || orig.Verdict != Accept {
			t.Fatalf("%s: %v %v", name, err, orig.Verdict)
		}
		accepted++
		text := readMessage(bytes.NewReader(raw), testOptions().Limits.withDefaults(), func() int64 { return 0 }).text
		for li, l := range languages {
			for how, wrap := range historyWrappers(l) {
				newText := newTexts[(li+len(how))%len(newTexts)]
				t.Run(name+"/"+l.code+"/"+how, func(t *testing.T) {
					msg := replyEmail(name+l.code+how, newText, wrap(text))
					res, err := Parse(bytes.NewReader(msg), testOptions())
					if err != nil {
						t.Fatal(err)
					}
					if res.Verdict == Accept && quotesRequest(res.Requests, orig.Requests) {
						t.Errorf("the quoted history was accepted as a request: %+v\n%s", res.Requests[0], msg)
					}
				})
			}
		}
	}
	if accepted < 50 {
		t.Errorf("only %d accepted emails in the corpus", accepted)
	}
}

// quotesRequest reports whether any request of got is one of quoted.
func quotesRequest(got, quoted []*keydesk.Request) bool {
	for _, g := range got {
		for _, q := range quoted {
			if g.Environment == q.Environment && g.Label == q.Label {
				return true
			}
		}
	}
	return false
}
