package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// The threads bucket holds two kinds of record: the entries of each
// request's conversation (e.<request>.<entry>) and the index from a
// Message-ID to the requests it is about (m.<digest>), by which a reply
// finds its thread.
const (
	threadEntryPrefix = "e."
	threadIndexPrefix = "m."
	// maxIndexRequests bounds the requests one Message-ID maps to (one
	// email makes at most parse's request limit).
	maxIndexRequests = 64
)

// MessageIndex is what one Message-ID is about.
type MessageIndex struct {
	MessageID string   `json:"message_id"`
	Requests  []string `json:"requests"`
}

func threadEntryKey(requestID, entryID string) string {
	return threadEntryPrefix + requestID + "." + entryID
}

func threadIndexKey(messageID string) string {
	sum := sha256.Sum256([]byte(keydesk.NormalizeMessageID(messageID)))
	return threadIndexPrefix + hex.EncodeToString(sum[:16])
}

// AppendThread adds e to its request's thread. It is idempotent on
// (RequestID, ID): an entry stored already is kept as it is and added is
// false. Past the thread's caps (keydesk.MaxThreadEntries,
// MaxThreadEntryText, MaxThreadBytes) the entry is still recorded, its
// text cut or left out and Truncated set: MailRef, when the caller knows
// one, links what was not kept here.
func (c *Conn) AppendThread(ctx context.Context, e keydesk.ThreadEntry) (added bool, err error) {
	if !keydesk.ValidRequestID(e.RequestID) || e.ID == "" || strings.ContainsAny(e.ID, ".*> ") {
		return false, fmt.Errorf("queue: thread entry %q of %q: not a valid key", e.ID, e.RequestID)
	}
	if e.At.IsZero() {
		e.At = c.Now().UTC()
	}
	entries, err := c.threads.retrying().Scan(ctx, threadEntryPrefix+e.RequestID+".")
	if err != nil {
		return false, fmt.Errorf("queue: thread of %s: %w", e.RequestID, err)
	}
	total := 0
	for _, x := range entries {
		if x.Err != nil {
			continue
		}
		if x.Value.ID == e.ID {
			return false, nil
		}
		total += len(x.Value.Text)
	}
	if len(e.Text) > keydesk.MaxThreadEntryText {
		e.Text, e.Truncated = strings.ToValidUTF8(e.Text[:keydesk.MaxThreadEntryText], ""), true
	}
	if len(entries) >= keydesk.MaxThreadEntries || total+len(e.Text) > keydesk.MaxThreadBytes {
		e.Text, e.Truncated = "", true
	}
	_, err = c.threads.retrying().Create(ctx, threadEntryKey(e.RequestID, e.ID), &e)
	if errors.Is(err, keydesk.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: thread of %s: add %s: %w", e.RequestID, e.ID, err)
	}
	return true, nil
}

// Thread returns a request's conversation, oldest first.
func (c *Conn) Thread(ctx context.Context, requestID string) ([]keydesk.ThreadEntry, error) {
	if !keydesk.ValidRequestID(requestID) {
		return nil, fmt.Errorf("request %s: %w", requestID, keydesk.ErrNotFound)
	}
	entries, err := c.threads.retrying().Scan(ctx, threadEntryPrefix+requestID+".")
	if err != nil {
		return nil, fmt.Errorf("queue: thread of %s: %w", requestID, err)
	}
	out := make([]keydesk.ThreadEntry, 0, len(entries))
	for _, x := range entries {
		if x.Err != nil {
			return nil, x.Err
		}
		out = append(out, *x.Value)
	}
	slices.SortStableFunc(out, func(a, b keydesk.ThreadEntry) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// IndexMessage records that the email with messageID is about requests,
// adding to what the index held for it. A reply's In-Reply-To or
// References then finds them (LookupMessage).
func (c *Conn) IndexMessage(ctx context.Context, messageID string, requests ...string) error {
	id := keydesk.NormalizeMessageID(messageID)
	if id == "" || len(requests) == 0 {
		return nil
	}
	key := threadIndexKey(id)
	b := c.index.retrying()
	for {
		cur, rev, err := b.Get(ctx, key)
		if errors.Is(err, keydesk.ErrNotFound) {
			v := &MessageIndex{MessageID: id, Requests: uniq(nil, requests)}
			if _, err = b.Create(ctx, key, v); errors.Is(err, keydesk.ErrConflict) {
				continue
			}
			return wrapIndex(id, err)
		}
		var de *DecodeError
		if errors.As(err, &de) {
			cur = &MessageIndex{MessageID: id}
		} else if err != nil {
			return wrapIndex(id, err)
		}
		next := uniq(cur.Requests, requests)
		if len(next) == len(cur.Requests) {
			return nil
		}
		_, err = b.Update(ctx, key, &MessageIndex{MessageID: id, Requests: next}, rev)
		if errors.Is(err, keydesk.ErrConflict) {
			continue
		}
		return wrapIndex(id, err)
	}
}

func wrapIndex(id string, err error) error {
	if err != nil {
		return fmt.Errorf("queue: index message %q: %w", id, err)
	}
	return nil
}

// uniq is a with b's requests it lacks, capped at maxIndexRequests.
func uniq(a, b []string) []string {
	out := slices.Clone(a)
	for _, r := range b {
		if len(out) >= maxIndexRequests {
			break
		}
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// LookupMessage returns the requests the email with messageID is about
// (keydesk.ErrNotFound: none keydesk knows of).
func (c *Conn) LookupMessage(ctx context.Context, messageID string) ([]string, error) {
	id := keydesk.NormalizeMessageID(messageID)
	if id == "" {
		return nil, fmt.Errorf("message %q: %w", messageID, keydesk.ErrNotFound)
	}
	v, _, err := c.index.retrying().Get(ctx, threadIndexKey(id))
	if err != nil {
		if errors.Is(err, keydesk.ErrNotFound) {
			return nil, fmt.Errorf("message %q: %w", id, keydesk.ErrNotFound)
		}
		return nil, fmt.Errorf("queue: look up message %q: %w", id, err)
	}
	if v.MessageID != id { // a digest collision: not this message
		return nil, fmt.Errorf("message %q: %w", id, keydesk.ErrNotFound)
	}
	return v.Requests, nil
}
