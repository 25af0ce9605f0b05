// Package apiclient calls keydesk's review JSON API with a bearer token:
// the client the queue, batch and mail commands share.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/review"
)

// maxAnswer bounds an answer read into memory.
const maxAnswer = 64 << 20

// Client calls the API at Base (no trailing slash) with Token.
type Client struct {
	Base  string
	Token string
	HC    *http.Client
}

// Error is an error answer of the API.
type Error struct {
	Status int
	review.ErrorBody
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (%s, HTTP %d)", e.ErrorBody.Error, e.Code, e.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.ErrorBody.Error)
}

// Do sends a request with body (JSON, if not nil) and decodes a 2xx
// answer into out (if not nil); any other answer is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HC.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach keydesk at %s: %w", c.Base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.ErrorBody) != nil || e.ErrorBody.Error == "" {
			e.ErrorBody.Error = strings.TrimSpace(keydesk.SafeLine(string(data[:min(len(data), 200)]), 0))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("the answer is not the JSON expected (is KEYDESK_URL a keydesk?): %w", err)
		}
	}
	return nil
}

// GetPages GETs path with query q, and, with all, every following page by
// its cursor. add takes each decoded page and returns its next cursor;
// GetPages returns the last one ("" when the list is complete).
func GetPages[T any](ctx context.Context, c *Client, path string, q url.Values, all bool, add func(*T) string) (string, error) {
	for {
		var page T
		if err := c.Do(ctx, "GET", path+"?"+q.Encode(), nil, &page); err != nil {
			return "", err
		}
		next := add(&page)
		if !all || next == "" {
			return next, nil
		}
		q.Set("cursor", next)
	}
}

// Act posts action on request id (approve, reject, cancel, notes, reply,
// assign, proposal/accept, proposal/refuse…) with body, and returns the
// request as the API answers it, with Message saying what was done.
func (c *Client) Act(ctx context.Context, id, action string, body review.ActionBody) (*review.Request, error) {
	var r review.Request
	if err := c.Do(ctx, "POST", "/api/v1/requests/"+url.PathEscape(id)+"/"+action, body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
