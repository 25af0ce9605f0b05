package parse

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// checkThreading holds what a reply's threading may cost whatever the
// input: bounded Message-IDs with no brackets, space or control in them,
// valid request IDs, bounded text; an unauthenticated sender speaks for
// no request.
func checkThreading(t *testing.T, r *Result) {
	t.Helper()
	ids := append(slices.Clone(r.InReplyTo), r.References...)
	if len(ids) > MaxReferences {
		t.Errorf("%d threading IDs, want at most %d", len(ids), MaxReferences)
	}
	for _, id := range ids {
		if id == "" || len(id) > MaxMessageIDLength || strings.ContainsAny(id, "<> \t\r\n") || !keydesk.Inert(id) {
			t.Errorf("threading ID %q", id)
		}
	}
	for _, ids := range [][]string{r.SubjectIDs, r.TextIDs} {
		if len(ids) > MaxNamedIDs {
			t.Errorf("%d named IDs", len(ids))
		}
		for _, id := range ids {
			if !keydesk.ValidRequestID(id) || id != strings.ToUpper(id) {
				t.Errorf("named ID %q", id)
			}
		}
	}
	if len(r.Text) > MaxOwnText || keydesk.SafeText(r.Text) != r.Text {
		t.Errorf("own text of %d bytes, not inert: %q", len(r.Text), r.Text)
	}
	if r.Authenticated && (r.Partner == nil || r.Via != "") {
		t.Errorf("authenticated without a partner, or through a forward")
	}
}

// FuzzThreading feeds arbitrary threading headers to the parser: no
// panic, and the bounds of checkThreading hold.
func FuzzThreading(f *testing.F) {
	f.Add("<a@b.example>", "<r1@x.example> <r2@x.example>", "Re: KR-20261130-AB12")
	f.Add("a@b", "x@y\tz@w", "Re: kr-20261130-ab12 and KR-20261130-CD34")
	f.Add("<"+strings.Repeat("x", 400)+"@y>", strings.Repeat("<r@x> ", 500), "")
	f.Add("<a\u202e@b>", "<<<>>>", "KR-99999999-ZZZZ")
	f.Fuzz(func(t *testing.T, inReplyTo, references, subject string) {
		for _, s := range []*string{&inReplyTo, &references, &subject} {
			*s = strings.NewReplacer("\r", " ", "\n", " ").Replace(*s)
		}
		raw := "Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n" +
			"From: Jane <jane.doe@acme.example>\r\nSubject: " + subject + "\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n" +
			"Message-ID: <f@acme.example>\r\nIn-Reply-To: " + inReplyTo + "\r\nReferences: " + references + "\r\n\r\nany update on " + subject + "?\r\n"
		r, err := Parse(strings.NewReader(raw), testOptions())
		if err != nil {
			t.Fatal(err)
		}
		checkThreading(t, r)
	})
}

// TestThreading: what a reply's header and own text say about the
// requests it answers.
func TestThreading(t *testing.T) {
	many := ""
	for i := range 300 {
		many += fmt.Sprintf(" <r%d@x.example>", i)
	}
	tests := []struct {
		name             string
		header, body     string
		inReplyTo, refs  []string
		subjectIDs       []string
		textIDs          []string
		question, stated bool
	}{
		{
			name:      "a reply to an acknowledgement",
			header:    "Subject: Re: New key (KR-20261130-ab12)\r\nIn-Reply-To: <KR-20261130-AB12.ack@buildmarkets.ai>\r\nReferences: <orig@acme.example>\r\n\t<KR-20261130-AB12.ack@buildmarkets.ai>\r\n",
			body:      "Any update?\r\n\r\nOn Mon, 30 Nov 2026 at 09:00, Buildmarkets wrote:\r\n> Request:     KR-20261130-ZZ99\r\n> Scopes: trading:write\r\n",
			inReplyTo: []string{"KR-20261130-AB12.ack@buildmarkets.ai"}, refs: []string{"orig@acme.example"},
			subjectIDs: []string{"KR-20261130-AB12"}, question: true,
		},
		{
			name:      "a correction: the quoted history is not the sender's",
			header:    "Subject: Re: New key\r\nIn-Reply-To: <a@b.example>\r\n",
			body:      "Only this please:\r\nScopes: accounts:read\r\n\r\nOn Mon, 30 Nov 2026 at 09:00, Buildmarkets wrote:\r\n> Label: old\r\n",
			inReplyTo: []string{"a@b.example"}, stated: true,
		},
		{
			name:    "a question naming its request in the text, in German",
			header:  "Subject: Schlüssel\r\n",
			body:    "Wie ist der Stand der Anfrage KR-20261130-CD34\r\n",
			textIDs: []string{"KR-20261130-CD34"}, question: true,
		},
		{
			name:     "French, with no question mark",
			header:   "Subject: clé API\r\n",
			body:     "Bonjour, des nouvelles de notre demande\r\n",
			question: true,
		},
		{
			name:      "hostile: long and broken IDs skipped, the list bounded",
			header:    "Subject: x\r\nIn-Reply-To: <" + strings.Repeat("y", 300) + "@z> <no-at-sign> <ok@x.example>\r\nReferences:" + many + "\r\n",
			body:      "thanks\r\n",
			inReplyTo: []string{"ok@x.example"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := "Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n" +
				"From: Jane <jane.doe@acme.example>\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\nMessage-ID: <t@acme.example>\r\n" +
				tc.header + "\r\n" + tc.body
			r, err := Parse(strings.NewReader(raw), testOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkThreading(t, r)
			if !slices.Equal(r.InReplyTo, tc.inReplyTo) {
				t.Errorf("In-Reply-To %q, want %q", r.InReplyTo, tc.inReplyTo)
			}
			if tc.refs != nil && !slices.Equal(r.References, tc.refs) {
				t.Errorf("References %q, want %q", r.References, tc.refs)
			}
			if strings.Contains(tc.name, "hostile") && len(r.InReplyTo)+len(r.References) != MaxReferences {
				t.Errorf("%d IDs of a long References, want the %d bound", len(r.InReplyTo)+len(r.References), MaxReferences)
			}
			if !slices.Equal(r.SubjectIDs, tc.subjectIDs) || !slices.Equal(r.TextIDs, tc.textIDs) {
				t.Errorf("named IDs %q in the subject, %q in the text; want %q, %q", r.SubjectIDs, r.TextIDs, tc.subjectIDs, tc.textIDs)
			}
			if r.Question != tc.question {
				t.Errorf("question %v, want %v", r.Question, tc.question)
			}
			if got := statedAny(r); got != tc.stated {
				t.Errorf("stated %+v, want some: %v", r.Stated, tc.stated)
			}
			if tc.stated && (len(r.Stated) != 1 || !r.Stated[0].HasScopes || r.Stated[0].HasLabel || r.Stated[0].HasEnvironment || len(r.Stated[0].Reasons) > 0) {
				t.Errorf("stated %+v, want only the scopes", r.Stated)
			}
			if !r.Authenticated {
				t.Error("a partner's DMARC-passing email is not authenticated")
			}
			if strings.Contains(r.Text, ">") {
				t.Errorf("own text holds the quoted history: %q", r.Text)
			}
		})
	}
}

func statedAny(r *Result) bool {
	return slices.ContainsFunc(r.Stated, func(s Stated) bool { return s.Any() })
}
