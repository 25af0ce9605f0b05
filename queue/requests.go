package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// maxIDSalts bounds the search for a free ID when two emails of one day
// collide on the four characters of the hash.
const maxIDSalts = 32

// Create stores a new request. Its ID is derived from SourceDate,
// SourceKey and Index unless set. A second Create of the same source
// request creates nothing and returns the stored record with created=false:
// that is how a rescan or a crash-and-retry of intake stays harmless.
func (c *Conn) Create(ctx context.Context, r *keydesk.Request, actor string) (stored *keydesk.Request, created bool, err error) {
	if r.SourceKey == "" {
		return nil, false, errors.New("queue: create request: no source key")
	}
	if !r.State.Valid() {
		return nil, false, fmt.Errorf("queue: create request: invalid state %q", r.State)
	}
	fixedID := r.ID != ""
	for salt := 0; salt < maxIDSalts; salt++ {
		rec := r.Clone()
		if !fixedID {
			rec.ID = keydesk.RequestID(rec.SourceDate, rec.SourceKey, rec.Index, salt)
		}
		now := c.Now().UTC()
		rec.CreatedAt, rec.UpdatedAt = now, now
		rec.LastEvent = &keydesk.Event{Ref: rec.ID, At: now, Actor: actor, Action: "create", To: rec.State}
		rev, err := c.requests.Create(ctx, rec.ID, rec)
		if err == nil {
			rec.Revision = rev
			return rec, true, nil
		}
		if !errors.Is(err, keydesk.ErrConflict) {
			return nil, false, fmt.Errorf("queue: create %s: %w", rec.ID, err)
		}
		old, err := c.Get(ctx, rec.ID)
		if err != nil {
			return nil, false, err
		}
		if old.SourceKey == rec.SourceKey && old.Index == rec.Index {
			return old, false, nil
		}
		if fixedID {
			return nil, false, fmt.Errorf("queue: create %s: the ID belongs to another request", rec.ID)
		}
	}
	return nil, false, fmt.Errorf("queue: create request: no free ID after %d tries", maxIDSalts)
}

// Get returns a request with its revision. While the cluster cannot
// answer, it tries again until ctx ends.
func (c *Conn) Get(ctx context.Context, id string) (*keydesk.Request, error) {
	r, rev, err := c.requests.retrying().Get(ctx, id)
	if err != nil {
		if errors.Is(err, keydesk.ErrNotFound) {
			return nil, fmt.Errorf("request %s: %w", id, keydesk.ErrNotFound)
		}
		var de *DecodeError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, fmt.Errorf("queue: get %s: %w", id, err)
	}
	r.Revision = rev
	return r, nil
}

// Filter selects requests in List. Empty fields match everything.
type Filter struct {
	States      []keydesk.State
	Partner     string
	Environment keydesk.Environment
}

func (f Filter) match(r *keydesk.Request) bool {
	return (len(f.States) == 0 || slices.Contains(f.States, r.State)) &&
		(f.Partner == "" || f.Partner == r.Partner) &&
		(f.Environment == "" || f.Environment == r.Environment)
}

// List returns every request that matches f, oldest first. It streams the
// bucket's latest values through one consumer rather than a Get per key.
// While the cluster cannot answer, it tries again until ctx ends.
func (c *Conn) List(ctx context.Context, f Filter) ([]*keydesk.Request, error) {
	entries, err := c.requests.retrying().Scan(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("queue: list requests: %w", err)
	}
	var out []*keydesk.Request
	for _, e := range entries {
		if e.Err != nil {
			return nil, e.Err
		}
		r := e.Value
		r.Revision = e.Revision
		if f.match(r) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *keydesk.Request) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Change is one compare-and-set on a request.
type Change struct {
	// Actor is who makes the change: a staff name, or a role such as "batch".
	Actor string
	// Action names it in the audit trail: approve, reject, correct, generate…
	Action string
	// From, if set, is the state the record must be in.
	From keydesk.State
	// To, if set, is the new state; the state table must allow From → To.
	To keydesk.State
	// Revision, if set, is the revision the caller last saw: the change is
	// refused with ErrConflict if the record has changed since.
	Revision uint64
	// Note says what changed, for people reading the audit trail.
	Note string
	// Subject is the identity provider's subject of an Actor signed in by
	// single sign-on, for the audit trail.
	Subject string
	// Mutate edits the record; an error aborts the change and is returned.
	Mutate func(r *keydesk.Request) error
}

// Apply reads the request, checks the change against its state and the
// state table, applies it and writes it back with a compare-and-set on the
// revision read. A concurrent writer makes it fail with an error that
// matches keydesk.ErrConflict; nothing is retried here, since the caller
// must decide again on the new state.
func (c *Conn) Apply(ctx context.Context, id string, ch Change) (*keydesk.Request, error) {
	cur, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if ch.Revision != 0 && ch.Revision != cur.Revision {
		return nil, fmt.Errorf("request %s: %w", id, keydesk.ErrConflict)
	}
	if ch.From != "" && cur.State != ch.From {
		return nil, &keydesk.TransitionError{ID: id, From: ch.From, To: ch.To, Actual: cur.State}
	}
	if ch.To != "" && ch.To != cur.State && !keydesk.CanTransition(cur.State, ch.To) {
		return nil, &keydesk.TransitionError{ID: id, From: cur.State, To: ch.To}
	}
	next := cur.Clone()
	if ch.Mutate != nil {
		if err := ch.Mutate(next); err != nil {
			return nil, err
		}
	}
	next.ID = cur.ID // a mutation may not move a record
	from := cur.State
	if ch.To != "" {
		next.State = ch.To
	}
	now := c.Now().UTC()
	next.UpdatedAt = now
	next.LastEvent = &keydesk.Event{Ref: id, At: now, Actor: ch.Actor, Action: ch.Action, From: from, To: next.State, Change: ch.Note, Subject: ch.Subject}
	rev, err := c.requests.retrying().Update(ctx, id, next, cur.Revision)
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			return nil, fmt.Errorf("request %s: %w", id, keydesk.ErrConflict)
		}
		return nil, fmt.Errorf("queue: update %s: %w", id, err)
	}
	next.Revision = rev
	return next, nil
}

// Transition moves a request from one state to another as one
// compare-and-set, with an audit event naming actor and note.
func (c *Conn) Transition(ctx context.Context, id string, from, to keydesk.State, actor, note string, mutate func(*keydesk.Request) error) (*keydesk.Request, error) {
	return c.Apply(ctx, id, Change{Actor: actor, Action: "transition", From: from, To: to, Note: note, Mutate: mutate})
}
