package batch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/bmapi"
)

func TestClassifyBMAPI(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		kind  batch.ErrorKind
		after time.Duration
	}{
		{"401", &bmapi.Error{Kind: bmapi.ErrUnauthorized, Method: "POST", Status: 401}, batch.Refused, 0},
		{"403 wrapped", fmt.Errorf("create: %w", &bmapi.Error{Kind: bmapi.ErrForbidden, Method: "GET", Status: 403}), batch.Refused, 0},
		{"429", &bmapi.Error{Kind: bmapi.ErrRateLimited, Method: "POST", Status: 429, RetryAfter: 3 * time.Second}, batch.Temporary, 3 * time.Second},
		{"500 on create", &bmapi.Error{Kind: bmapi.ErrServer, Method: "POST", Status: 500}, batch.Unclear, 0},
		{"500 on list", &bmapi.Error{Kind: bmapi.ErrServer, Method: "GET", Status: 500}, batch.Temporary, 0},
		{"unreadable create answer", &bmapi.Error{Kind: bmapi.ErrProtocol, Method: "POST", Status: 201}, batch.Unclear, 0},
		{"transport before sending", &bmapi.Error{Kind: bmapi.ErrTransport, Method: "POST"}, batch.Temporary, 0},
		{"400", &bmapi.Error{Kind: bmapi.ErrBadRequest, Method: "POST", Status: 400}, batch.Permanent, 0},
		{"404", &bmapi.Error{Kind: bmapi.ErrBadRequest, Method: "DELETE", Status: 404}, batch.NotFound, 0},
		{"unknown error", errors.New("something else"), batch.Unclear, 0},
		{"context", context.DeadlineExceeded, batch.Unclear, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, after := batch.ClassifyBMAPI(tc.err)
			if kind != tc.kind || after != tc.after {
				t.Errorf("ClassifyBMAPI(%v) = %s, %s; want %s, %s", tc.err, kind, after, tc.kind, tc.after)
			}
		})
	}
}
