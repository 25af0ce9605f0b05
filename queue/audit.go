package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AuditEntry is one event of the audit trail with where it came from.
type AuditEntry struct {
	keydesk.Event
	// Kind is request, batch, staff or system.
	Kind string `json:"kind"`
	// Seq is the AUDIT stream sequence: a stable, ordered cursor.
	Seq uint64 `json:"seq"`
	// State is the request's state after the event (request events only).
	Request *keydesk.Request `json:"-"`
}

// Record appends a non-request event (a batch run, a staff login, a
// configuration reload) to the audit stream. kind is batch, staff or system;
// ref names what it concerns. Request changes need no call: the server
// sources every revision of the requests bucket into the stream itself.
func (c *Conn) Record(ctx context.Context, kind string, ev keydesk.Event) error {
	switch kind {
	case "batch", "staff", "system":
	default:
		return fmt.Errorf("queue: audit kind %q", kind)
	}
	if ev.At.IsZero() {
		ev.At = c.Now().UTC()
	}
	ref := subjectToken(ev.Ref)
	if ref == "" {
		ref = "_"
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("queue: encode audit event: %w", err)
	}
	// The digest of the event is its message ID: a try again after a lost
	// answer cannot record the event twice.
	sum := sha256.Sum256(data)
	err = RetryEach(ctx, func(ctx context.Context) error {
		_, err := c.js.Publish(ctx, SubjectAudit+"."+kind+"."+ref, data, jetstream.WithMsgID(hex.EncodeToString(sum[:16])))
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: audit %s %s: %w", kind, ev.Ref, err)
	}
	return nil
}

// subjectToken makes s safe as one NATS subject token.
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, s)
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	// Kind: request, batch, staff, system; empty for all.
	Kind string
	// Ref: one request ID, batch ID or staff name (needs Kind).
	Ref string
	// After: only entries with a larger Seq (a cursor).
	After uint64
	// Limit: at most this many (0: no limit).
	Limit int
}

// Audit reads the audit trail, oldest first.
func (c *Conn) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	subj := SubjectAudit + ".>"
	if q.Kind != "" {
		subj = SubjectAudit + "." + q.Kind + ".>"
		if q.Ref != "" {
			subj = SubjectAudit + "." + q.Kind + "." + subjectToken(q.Ref)
		}
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}}
	if q.After > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = q.After + 1
	}
	info, err := c.js.Stream(ctx, StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("queue: audit: %w", err)
	}
	cons, err := info.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("queue: audit: %w", err)
	}
	var out []AuditEntry
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("queue: audit: %w", err)
		}
		n := 0
		var pending uint64
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = md.NumPending
			if e, ok := decodeAudit(m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream); ok {
				out = append(out, e)
				if q.Limit > 0 && len(out) >= q.Limit {
					return out, nil
				}
			}
		}
		if err := batch.Error(); err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("queue: audit: %w", err)
		}
		if n == 0 || pending == 0 {
			return out, nil
		}
	}
}

func decodeAudit(subject string, h nats.Header, data []byte, seq uint64) (AuditEntry, bool) {
	parts := strings.SplitN(subject, ".", 3)
	if len(parts) < 3 {
		return AuditEntry{}, false
	}
	e := AuditEntry{Kind: parts[1], Seq: seq}
	if e.Kind == "request" {
		if op := h.Get("KV-Operation"); op != "" {
			e.Event = keydesk.Event{Ref: parts[2], Action: strings.ToLower(op)}
			return e, true
		}
		var r keydesk.Request
		if err := json.Unmarshal(data, &r); err != nil || r.LastEvent == nil {
			return AuditEntry{}, false
		}
		e.Event = *r.LastEvent
		e.Request = &r
		return e, true
	}
	if err := json.Unmarshal(data, &e.Event); err != nil {
		return AuditEntry{}, false
	}
	return e, true
}

// History returns the audit trail of one request, oldest first. The audit
// stream is filled asynchronously by the server; wait, if given, bounds how
// long to wait for the record's latest revision to arrive in it.
func (c *Conn) History(ctx context.Context, id string, wait time.Duration) ([]AuditEntry, error) {
	deadline := time.Now().Add(wait)
	for {
		out, err := c.Audit(ctx, AuditQuery{Kind: "request", Ref: id})
		if err != nil {
			return nil, err
		}
		if wait <= 0 || time.Now().After(deadline) {
			return out, nil
		}
		cur, err := c.Get(ctx, id)
		if err != nil {
			return out, nil
		}
		if n := len(out); n > 0 && out[n-1].Request != nil && out[n-1].Request.UpdatedAt.Equal(cur.UpdatedAt) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// AuditUsage is how full the AUDIT stream is.
type AuditUsage struct {
	// Bytes and Msgs are what the stream holds now.
	Bytes, Msgs uint64
	// MaxBytes is its limit (0: none, for a stream made before limits).
	MaxBytes int64
	// First is the time of the oldest event it still holds.
	First time.Time
}

// Full is the fraction of MaxBytes in use (0 without a limit).
func (u AuditUsage) Full() float64 {
	if u.MaxBytes <= 0 {
		return 0
	}
	return float64(u.Bytes) / float64(u.MaxBytes)
}

// AuditUsage reads how full the AUDIT stream is, from the stream itself,
// so that it is right whichever instance set the limit.
func (c *Conn) AuditUsage(ctx context.Context) (AuditUsage, error) {
	st, err := c.js.Stream(ctx, StreamAudit)
	if err != nil {
		return AuditUsage{}, fmt.Errorf("queue: audit usage: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return AuditUsage{}, fmt.Errorf("queue: audit usage: %w", err)
	}
	return AuditUsage{Bytes: info.State.Bytes, Msgs: info.State.Msgs, MaxBytes: info.Config.MaxBytes, First: info.State.FirstTime}, nil
}
