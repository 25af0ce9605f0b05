// Package templates holds every text keydesk writes for people: the emails
// (text/template, under mail/) and the review UI's pages (html/template,
// under web/), embedded in the binary and overridable file by file from a
// directory named in config (templates.dir).
//
// Invariants: a mail template defines "subject" and "body"; a subject is
// one line (line breaks are refused, so no data can inject a header); data
// passed to templates never holds a secret except the key-delivery body,
// which is rendered in memory and encrypted at once. Every email to a
// partner is rendered by RenderPartnerMail: wrapped at 72 columns, and
// closed by the "closing" partial (mail/partials/closing.tmpl), the one
// place that says how to answer and signs off in the company's name.
package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path"
	"strings"
	"text/template"
	"time"

	"github.com/buildmarkets/keydesk"
)

//go:embed mail web
var embedded embed.FS

// Set is the loaded templates.
type Set struct {
	fsys fs.FS
	mail map[string]*template.Template
}

// overlay reads a file from dir first, then from the embedded files.
type overlay struct {
	dir  fs.FS
	base fs.FS
}

func (o overlay) Open(name string) (fs.File, error) {
	if o.dir != nil {
		if f, err := o.dir.Open(name); err == nil {
			return f, nil
		}
	}
	return o.base.Open(name)
}

// Load returns the embedded templates, each overridden by a file of the
// same path under dir (mail/acknowledgement.tmpl, web/queue.html) when dir
// is not empty. Every mail template is parsed now, so a broken override is
// reported at start, not when the first email is due.
func Load(dir string) (*Set, error) {
	o := overlay{base: embedded}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("templates: dir %s is not a directory", dir)
		}
		o.dir = os.DirFS(dir)
	}
	s := &Set{fsys: o, mail: map[string]*template.Template{}}
	names, err := fs.Glob(embedded, "mail/*.tmpl")
	if err != nil {
		return nil, err
	}
	partials, err := fs.Glob(embedded, "mail/partials/*.tmpl")
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range names {
		b, err := fs.ReadFile(o, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", n, err))
			continue
		}
		name := strings.TrimSuffix(path.Base(n), ".tmpl")
		t := template.New(name).Funcs(Funcs).Option("missingkey=error")
		// The partials first: a mail template that defines one of their
		// names itself keeps its own.
		for _, pn := range partials {
			pb, err := fs.ReadFile(o, pn)
			if err == nil {
				_, err = t.New(pn).Parse(string(pb))
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("templates: %s: %w", pn, err))
			}
		}
		if _, err := t.Parse(string(b)); err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", n, err))
			continue
		}
		if t.Lookup("subject") == nil || t.Lookup("body") == nil {
			errs = append(errs, fmt.Errorf("templates: %s must define \"subject\" and \"body\"", n))
			continue
		}
		s.mail[name] = t
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// MustLoadEmbedded returns the embedded templates; for tests and the demo.
func MustLoadEmbedded() *Set {
	s, err := Load("")
	if err != nil {
		panic(err)
	}
	return s
}

// Mail is a rendered email text.
type Mail struct {
	Subject string
	Body    string
}

// RenderMail renders mail template name with data.
func (s *Set) RenderMail(name string, data any) (Mail, error) {
	t, ok := s.mail[name]
	if !ok {
		return Mail{}, fmt.Errorf("templates: no mail template %q", name)
	}
	var subj, body bytes.Buffer
	if err := t.ExecuteTemplate(&subj, "subject", data); err != nil {
		return Mail{}, fmt.Errorf("templates: %s subject: %w", name, err)
	}
	if err := t.ExecuteTemplate(&body, "body", data); err != nil {
		return Mail{}, fmt.Errorf("templates: %s body: %w", name, err)
	}
	sub := strings.TrimSpace(subj.String())
	if strings.ContainsAny(sub, "\r\n") {
		return Mail{}, fmt.Errorf("templates: %s: the subject has a line break", name)
	}
	return Mail{Subject: sub, Body: normalizeBody(body.String())}, nil
}

// RenderPartnerMail is RenderMail for an email to a partner: its body is
// wrapped at Width columns (Wrap), so a template writes each paragraph as
// one line and a long value never runs past the edge. Every builder of a
// partner-facing email renders it through here.
func (s *Set) RenderPartnerMail(name string, data any) (Mail, error) {
	m, err := s.RenderMail(name, data)
	if err != nil {
		return Mail{}, err
	}
	m.Body = Wrap(m.Body, Width)
	return m, nil
}

// Alert is what alert.tmpl shows support: what happened and what to do.
type Alert struct {
	Title, Text, Action string
}

// AlertMail renders an alert to support as an outgoing message. Its id
// must be stable for what it reports: the outbox and delivery send one
// message per ID, so a producer that retries after a crash cannot alert
// twice.
func (s *Set) AlertMail(id, to string, a Alert) (*keydesk.Outgoing, error) {
	return s.AlertMailFrom("alert", id, to, a)
}

// AlertMailFrom is AlertMail with an alert's own template (name, e.g.
// "alert-contact-key") and data, for an alert whose whole wording is a
// template.
func (s *Set) AlertMailFrom(name, id, to string, data any) (*keydesk.Outgoing, error) {
	m, err := s.RenderMail(name, data)
	if err != nil {
		return nil, err
	}
	return &keydesk.Outgoing{ID: id, Kind: keydesk.KindAlert, To: []string{to}, Subject: m.Subject, Text: m.Body}, nil
}

// ContactKeyAlert is what mail/alert-contact-key.tmpl tells support of a
// technical contact's key that expires soon or has expired.
type ContactKeyAlert struct {
	PartnerID, PartnerName      string
	Email, Fingerprint, KeyFile string
	Expires                     time.Time
	// Expired says Expires has passed; otherwise DaysLeft is the whole
	// days until it.
	Expired  bool
	DaysLeft int
}

// AuditSizeAlert is what mail/alert-audit-size.tmpl tells support of an
// AUDIT stream near its size limit.
type AuditSizeAlert struct {
	Msgs, Bytes uint64
	MaxBytes    int64
	Percent     int       // of MaxBytes in use
	First       time.Time // the oldest event's
}

// normalizeBody trims the template's leading blank lines and ends the body
// with exactly one newline.
func normalizeBody(s string) string {
	return strings.TrimLeft(strings.TrimRight(s, " \t\r\n"), "\r\n") + "\n"
}

// FS is the overlaid file system (mail/, web/), for the review UI to parse
// its pages from.
func (s *Set) FS() fs.FS { return s.fsys }

// ParseWeb parses the web templates matching patterns (e.g. "web/*.html")
// with html/template, so that every value is escaped for its context.
func (s *Set) ParseWeb(funcs htmltemplate.FuncMap, patterns ...string) (*htmltemplate.Template, error) {
	return htmltemplate.New("").Funcs(funcs).ParseFS(s.fsys, patterns...)
}

// Funcs are the helpers every mail template may use.
var Funcs = template.FuncMap{
	"join": strings.Join,
	"date": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("Mon 2 Jan 2006 15:04 MST")
	},
	"upper": strings.ToUpper,
	// day is a time's UTC date, 2006-01-02.
	"day": func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	// field is one "  Label:       value" line of a facts block (a long
	// value below its label); wrap breaks text at MailWidth.
	"field":      field,
	"wrap":       func(s string) string { return wrapText(MailWidth, s) },
	"stateWords": StateWords,
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
	},
}
