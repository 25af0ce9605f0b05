package parse

import (
	"errors"
	"github.com/emersion/go-message/mail"
	"reflect"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
)

// TestLimitKindFatal holds which limits leave a message unread: a cut in
// its structure is fatal, text cut after the request is not.
func TestLimitKindFatal(t *testing.T) {
	tests := []struct {
		name  string
		kind  limitKind
		fatal bool
	}{
		{"header", limitHeader, true},
		{"depth", limitDepth, true},
		{"parts", limitParts, true},
		{"text", limitText, false},
		{"html", limitHTML, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.kind.fatal(); got != tt.fatal {
				t.Errorf("fatal() = %v, want %v", got, tt.fatal)
			}
		})
	}
}

func TestBoundOnce(t *testing.T) {
	m := &msg{}
	m.bound(limitText, "only the first %d bytes of text were read", 10)
	m.bound(limitDepth, "MIME parts are nested deeper than %d levels", 3)
	m.bound(limitText, "only the first %d bytes of text were read", 10)
	want := []limit{
		{limitText, "only the first 10 bytes of text were read"},
		{limitDepth, "MIME parts are nested deeper than 3 levels"},
	}
	if !reflect.DeepEqual(m.bounds, want) {
		t.Errorf("bounds %v, want %v", m.bounds, want)
	}
}

// TestUnreadable checks each limit becomes a warning or a reason by its
// kind alone, whatever its wording, in the order the limits were hit.
func TestUnreadable(t *testing.T) {
	jane := []*mail.Address{{Address: "jane@acme.example"}}
	tooLarge := func(msg string) keydesk.Reason {
		return keydesk.Reason{Code: keydesk.ReasonTooLarge, Message: msg,
			Suggestion: "send the request as a short plain email without attachments"}
	}
	tests := []struct {
		name     string
		m        msg
		fatal    []keydesk.Reason
		warnings []string
	}{
		{"nothing", msg{headerOK: true, from: jane}, nil, nil},
		{"text cut warns", msg{headerOK: true, from: jane, bounds: []limit{{limitText, "only the first 10 bytes of text were read"}}},
			nil, []string{"only the first 10 bytes of text were read"}},
		{"html cut warns", msg{headerOK: true, from: jane, bounds: []limit{{limitHTML, "an HTML part has more than 3 tokens"}}},
			nil, []string{"an HTML part has more than 3 tokens"}},
		{"wording does not decide", msg{headerOK: true, from: jane, bounds: []limit{{limitParts, "only the first part"}, {limitText, "the header is larger"}}},
			[]keydesk.Reason{tooLarge("only the first part")}, []string{"the header is larger"}},
		{"structure cut is fatal", msg{headerOK: true, from: jane, bounds: []limit{
			{limitHeader, "the header is larger than 2048 bytes"},
			{limitText, "only the first 10 bytes of text were read"},
			{limitDepth, "MIME parts are nested deeper than 3 levels"},
		}},
			[]keydesk.Reason{tooLarge("the header is larger than 2048 bytes"), tooLarge("MIME parts are nested deeper than 3 levels")},
			[]string{"only the first 10 bytes of text were read"}},
		{"too large first", msg{headerOK: true, from: jane, tooLarge: true, bounds: []limit{{limitParts, "the message has more than 5 MIME parts"}}},
			[]keydesk.Reason{tooLarge("the email is larger than 1 MiB"), tooLarge("the message has more than 5 MIME parts")}, nil},
		{"malformed", msg{headerOK: true, from: jane, malformed: []string{"the message is empty"}},
			[]keydesk.Reason{{Code: keydesk.ReasonMalformed, Message: "the message is empty",
				Suggestion: "send the request again as a new email from your usual mail program"}}, nil},
		{"no sender", msg{headerOK: true, fromErr: errors.New("bad")},
			[]keydesk.Reason{{Code: keydesk.ReasonMalformed, Message: "the From header has no readable address",
				Suggestion: "send the request from your own mailbox"}}, nil},
		{"several senders", msg{headerOK: true, from: append(jane, &mail.Address{Address: "john@acme.example"})},
			[]keydesk.Reason{{Code: keydesk.ReasonMalformed, Message: "the From header names several senders",
				Suggestion: "send the request from one mailbox"}}, nil},
		{"unread header names no sender", msg{}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fatal, warnings := unreadable(&tt.m, 1<<20)
			if !reflect.DeepEqual(fatal, tt.fatal) {
				t.Errorf("fatal %v, want %v", fatal, tt.fatal)
			}
			if !reflect.DeepEqual(warnings, tt.warnings) {
				t.Errorf("warnings %q, want %q", warnings, tt.warnings)
			}
		})
	}
}

func TestRequestDate(t *testing.T) {
	received := testNow.Add(-time.Hour)
	sent := time.Date(2026, 11, 26, 10, 0, 0, 0, time.FixedZone("", 3600))
	const (
		unusable = "the Date header is unusable: the requests are dated when the mail arrived"
		missing  = "the message has no Date header: the requests are dated when the mail arrived"
	)
	tests := []struct {
		name       string
		m          msg
		receivedAt time.Time
		want       time.Time
		warning    string
	}{
		{"date header, in UTC", msg{headerOK: true, date: sent}, received, sent.UTC(), ""},
		{"no date header", msg{headerOK: true}, received, received, missing},
		{"unparsable", msg{headerOK: true, dateErr: errors.New("bad")}, received, received, unusable},
		{"before 2000", msg{headerOK: true, date: time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)}, received, received, unusable},
		{"two days ahead", msg{headerOK: true, date: testNow.Add(49 * time.Hour)}, received, received, unusable},
		{"a day ahead is a clock off", msg{headerOK: true, date: testNow.Add(24 * time.Hour)}, received, testNow.Add(24 * time.Hour), ""},
		{"no receive time: now", msg{headerOK: true}, time.Time{}, testNow, missing},
		{"unread header: no warning", msg{}, received, received, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.ReceivedAt = tt.receivedAt
			got, warning := requestDate(&tt.m, o)
			if !got.Equal(tt.want) || got.Location() != time.UTC || warning != tt.warning {
				t.Errorf("got %v %q, want %v %q", got, warning, tt.want, tt.warning)
			}
		})
	}
}

func TestHeaderSender(t *testing.T) {
	tests := []struct {
		name string
		m    msg
		want string
	}{
		{"one address, lower-cased", msg{headerOK: true, from: []*mail.Address{{Address: " Jane@ACME.example "}}}, "jane@acme.example"},
		{"several", msg{headerOK: true, from: []*mail.Address{{Address: "a@x.example"}, {Address: "b@x.example"}}}, ""},
		{"unreadable", msg{headerOK: true, from: []*mail.Address{{Address: "a@x.example"}}, fromErr: errors.New("bad")}, ""},
		{"header unread", msg{from: []*mail.Address{{Address: "a@x.example"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerSender(&tt.m); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSettle holds the verdict's order of precedence: an unknown sender,
// then an unauthenticated one, goes to a person whatever else is wrong; a
// partner's unreadable email is rejected; one without a request is
// reviewed; the rest is accepted.
func TestSettle(t *testing.T) {
	partner := &keydesk.Partner{ID: "acme", Name: "Acme"}
	one := []parsedRequest{{env: keydesk.Sandbox}}
	cut := []keydesk.Reason{{Code: keydesk.ReasonTooLarge, Message: "the message has more than 5 MIME parts"}}
	tests := []struct {
		name          string
		partner       *keydesk.Partner
		from          string
		internal      bool
		authenticated bool
		parsed        []parsedRequest
		fatal         []keydesk.Reason
		verdict       Verdict
		flags         []keydesk.Flag
		codes         []keydesk.ReasonCode
	}{
		{name: "accepted", partner: partner, authenticated: true, parsed: one, verdict: Accept},
		{name: "unreadable", partner: partner, authenticated: true, parsed: one, fatal: cut,
			verdict: Reject, codes: []keydesk.ReasonCode{keydesk.ReasonTooLarge}},
		{name: "no request", partner: partner, authenticated: true,
			verdict: Review, flags: []keydesk.Flag{keydesk.FlagNeedsReview}},
		{name: "unauthenticated, unreadable", partner: partner, parsed: one, fatal: cut,
			verdict: Review, codes: []keydesk.ReasonCode{keydesk.ReasonTooLarge}},
		{name: "unknown sender", from: "x@other.example", parsed: one, fatal: cut,
			verdict: Review, flags: []keydesk.Flag{keydesk.FlagUnknownSender},
			codes: []keydesk.ReasonCode{keydesk.ReasonUnknownSender, keydesk.ReasonTooLarge}},
		{name: "unknown sender, no request", from: "x@other.example",
			verdict: Review, flags: []keydesk.Flag{keydesk.FlagUnknownSender, keydesk.FlagNeedsReview},
			codes: []keydesk.ReasonCode{keydesk.ReasonUnknownSender}},
		{name: "forward without a readable sender: attribute gave the reason", internal: true, parsed: one,
			verdict: Review, flags: []keydesk.Flag{keydesk.FlagUnknownSender}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &decision{res: &Result{From: tt.from, Partner: tt.partner}}
			d.settle(tt.parsed, tt.fatal, tt.internal, tt.authenticated)
			var codes []keydesk.ReasonCode
			for _, r := range d.reasons {
				codes = append(codes, r.Code)
			}
			if d.res.Verdict != tt.verdict || !reflect.DeepEqual(d.flags, tt.flags) || !reflect.DeepEqual(codes, tt.codes) {
				t.Errorf("verdict %s flags %v reasons %v; want %s %v %v", d.res.Verdict, d.flags, codes, tt.verdict, tt.flags, tt.codes)
			}
		})
	}
}
