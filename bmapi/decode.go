package bmapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// The API's response shapes are only partly published: every decoder here
// tolerates unknown fields, numbers where strings were expected, and an
// envelope object around what it looks for.

// maxEnvelopeDepth bounds how far the decoders descend into envelopes.
const maxEnvelopeDepth = 3

// wireKey is a key's metadata as the API sends it.
type wireKey struct {
	ID        flexString `json:"id"`
	Label     flexString `json:"label"`
	APIKey    flexString `json:"api_key"`
	Scopes    flexScopes `json:"scopes"`
	CreatedAt flexTime   `json:"created_at"`
}

func (w *wireKey) key() keydesk.Key {
	return keydesk.Key{ID: string(w.ID), Label: string(w.Label), APIKey: string(w.APIKey), Scopes: []keydesk.Scope(w.Scopes), CreatedAt: time.Time(w.CreatedAt)}
}

// wireCreated is the answer to POST /v1/keys, possibly inside an envelope
// ({"data": {...}}, {"key": {...}}, {"result": {...}}).
type wireCreated struct {
	wireKey
	APISecret secretJSON      `json:"api_secret"`
	Data      createdEnvelope `json:"data"`
	Key       createdEnvelope `json:"key"`
	Result    createdEnvelope `json:"result"`
}

// createdEnvelope holds a nested answer when the member is an object and
// ignores any other value (a "key" member might be the key's own string).
type createdEnvelope struct{ v *wireCreated }

func (e *createdEnvelope) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	var w wireCreated
	if err := json.Unmarshal(b, &w); err != nil {
		return nil // an envelope member that is not a key is not ours to judge
	}
	e.v = &w
	return nil
}

// find returns the object that holds the created key: the top level if it
// has an api_secret, else the first envelope that does.
func (w *wireCreated) find(depth int) *wireCreated {
	if !w.APISecret.s.IsZero() || depth >= maxEnvelopeDepth {
		return w
	}
	for _, e := range []createdEnvelope{w.Data, w.Key, w.Result} {
		if e.v != nil {
			if f := e.v.find(depth + 1); !f.APISecret.s.IsZero() {
				return f
			}
		}
	}
	return w
}

// wipeExcept wipes the secrets of every envelope level but keep.
func (w *wireCreated) wipeExcept(keep *wireCreated) {
	if w != keep {
		w.APISecret.s.Wipe()
	}
	for _, e := range []createdEnvelope{w.Data, w.Key, w.Result} {
		if e.v != nil {
			e.v.wipeExcept(keep)
		}
	}
}

// decodeCreated reads a created key. The secret is unquoted straight from
// body into its own buffer; the caller wipes body afterwards.
func decodeCreated(body []byte) (*keydesk.CreatedKey, error) {
	var w wireCreated
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", jsonErr(err))
	}
	f := w.find(0)
	w.wipeExcept(f)
	var missing []string
	if f.ID == "" {
		missing = append(missing, "id")
	}
	if f.APIKey == "" {
		missing = append(missing, "api_key")
	}
	if f.APISecret.s.IsZero() {
		missing = append(missing, "api_secret")
	}
	if len(missing) > 0 {
		f.APISecret.s.Wipe()
		return nil, fmt.Errorf("the created key has no %s", strings.Join(missing, ", "))
	}
	return &keydesk.CreatedKey{Key: f.key(), APISecret: f.APISecret.s}, nil
}

// decodeList reads a list of keys: a bare array, or an object holding it
// under keys, data, items or results, or as its only array member. A list
// that says it has more pages is refused: this client knows no pagination,
// and a partial list would hide orphan keys from reconciliation.
func decodeList(body []byte) ([]keydesk.Key, error) {
	return decodeListDepth(bytes.TrimSpace(body), 0)
}

func decodeListDepth(body []byte, depth int) ([]keydesk.Key, error) {
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	switch body[0] {
	case 'n':
		if string(body) == "null" {
			return []keydesk.Key{}, nil
		}
	case '[':
		var ws []wireKey
		if err := json.Unmarshal(body, &ws); err != nil {
			return nil, fmt.Errorf("reading the key list: %w", jsonErr(err))
		}
		keys := make([]keydesk.Key, 0, len(ws))
		for i := range ws {
			keys = append(keys, ws[i].key())
		}
		return keys, nil
	case '{':
		if depth >= maxEnvelopeDepth {
			return nil, errors.New("the key list is nested too deeply")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, fmt.Errorf("reading the key list: %w", jsonErr(err))
		}
		defer func() {
			// A list carries no secret by contract; if one came anyway, do
			// not leave copies of it around.
			for _, v := range obj {
				clear(v)
			}
		}()
		if morePages(obj) {
			return nil, errors.New("the key list says it has more pages (has_more/next), which this client does not follow")
		}
		for _, name := range []string{"keys", "data", "items", "results"} {
			if v, ok := lookupFold(obj, name); ok && len(v) > 0 && (v[0] == '[' || v[0] == '{') {
				return decodeListDepth(v, depth+1)
			}
		}
		var arrays, objects []json.RawMessage
		for _, v := range obj {
			v = bytes.TrimSpace(v)
			if len(v) > 0 && v[0] == '[' {
				arrays = append(arrays, v)
			} else if len(v) > 0 && v[0] == '{' {
				objects = append(objects, v)
			}
		}
		switch {
		case len(arrays) == 1:
			return decodeListDepth(arrays[0], depth+1)
		case len(arrays) == 0 && len(objects) == 1:
			return decodeListDepth(objects[0], depth+1)
		case len(arrays) > 1:
			return nil, fmt.Errorf("the key list object has %d arrays and none is named keys or data", len(arrays))
		}
		return nil, errors.New("the response holds no array of keys")
	}
	return nil, errors.New("the key list is neither a JSON array nor an object")
}

func lookupFold(obj map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if v, ok := obj[name]; ok {
		return bytes.TrimSpace(v), true
	}
	for k, v := range obj {
		if strings.EqualFold(k, name) {
			return bytes.TrimSpace(v), true
		}
	}
	return nil, false
}

func morePages(obj map[string]json.RawMessage) bool {
	if v, ok := lookupFold(obj, "has_more"); ok && string(v) == "true" {
		return true
	}
	for _, name := range []string{"next", "next_page", "next_cursor", "next_page_token"} {
		if v, ok := lookupFold(obj, name); ok {
			s := string(v)
			if s != "null" && s != `""` && s != "false" && s != "0" {
				return true
			}
		}
	}
	return false
}

// jsonErr keeps the position of a syntax error but drops the offending
// value, which json.UnmarshalTypeError would otherwise describe.
func jsonErr(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("unexpected JSON %s for %s", te.Value, te.Field)
	}
	return errors.New("invalid JSON")
}

// flexString accepts a string or a number (an id sent as 17, say).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*f = flexString(b)
	default:
		*f = "" // null, bool, object: not ours to judge
	}
	return nil
}

// flexScopes accepts an array of scopes or one string of scopes separated
// by spaces or commas. Scopes the domain does not know are kept as sent:
// the API may grow new ones.
type flexScopes []keydesk.Scope

func (f *flexScopes) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	var words []string
	switch {
	case len(b) > 0 && b[0] == '[':
		var raw []flexString
		if err := json.Unmarshal(b, &raw); err != nil {
			return err
		}
		for _, r := range raw {
			words = append(words, string(r))
		}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		words = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	}
	out := make([]keydesk.Scope, 0, len(words))
	for _, w := range words {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, keydesk.Scope(w))
		}
	}
	*f = out
	return nil
}

// flexTime accepts RFC 3339 text or Unix seconds; anything else is the
// zero time rather than a failure, since a date is only shown to people.
type flexTime time.Time

func (f *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err == nil {
			for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"} {
				if t, err := time.Parse(layout, s); err == nil {
					*f = flexTime(t.UTC())
					return nil
				}
			}
		}
		return nil
	}
	if n, err := strconv.ParseFloat(string(b), 64); err == nil && n > 0 && n < 1e11 {
		*f = flexTime(time.Unix(int64(n), 0).UTC())
	}
	return nil
}

// secretJSON decodes a JSON string straight into a keydesk.Secret: the
// value is unquoted from the response body into a buffer the Secret owns,
// without an intermediate string.
type secretJSON struct{ s keydesk.Secret }

func (j *secretJSON) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	buf, err := unquote(b)
	if err != nil {
		return errors.New("api_secret is not a JSON string")
	}
	j.s.Wipe()
	j.s = keydesk.NewSecret(buf)
	return nil
}

// unquote decodes a JSON string literal into a new buffer.
func unquote(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil, errors.New("not a string")
	}
	b = b[1 : len(b)-1]
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			if c < 0x20 || c == '"' {
				clear(out)
				return nil, errors.New("bad character in string")
			}
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			clear(out)
			return nil, errors.New("bad escape")
		}
		switch b[i+1] {
		case '"', '\\', '/':
			out = append(out, b[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n := unquoteRune(b[i:])
			if n == 0 {
				clear(out)
				return nil, errors.New("bad \\u escape")
			}
			out = utf8.AppendRune(out, r)
			i += n
			continue
		default:
			clear(out)
			return nil, errors.New("bad escape")
		}
		i += 2
	}
	if !utf8.Valid(out) {
		clear(out)
		return nil, errors.New("not UTF-8")
	}
	return out, nil
}

// unquoteRune reads \uXXXX (and a following low surrogate) at the start of
// b, returning the rune and the bytes used, or 0 bytes if malformed.
func unquoteRune(b []byte) (rune, int) {
	r := hex4(b)
	if r < 0 {
		return 0, 0
	}
	if utf16.IsSurrogate(r) {
		if r2 := hex4(b[6:]); r2 >= 0 {
			if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
				return d, 12
			}
		}
		return utf8.RuneError, 6
	}
	return r, 6
}

func hex4(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[2:6] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return -1
		}
	}
	return r
}
