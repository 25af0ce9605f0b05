package keydesk_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/buildmarkets/keydesk"
)

type tempErr bool

func (e tempErr) Error() string   { return "test error" }
func (e tempErr) Temporary() bool { return bool(e) }

func TestTemporary(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"says nothing", errors.New("plain"), false},
		{"temporary", tempErr(true), true},
		{"permanent", tempErr(false), false},
		{"wrapped temporary", fmt.Errorf("send: %w", tempErr(true)), true},
		{"wrapped permanent", fmt.Errorf("send: %w", tempErr(false)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := keydesk.Temporary(tc.err); got != tc.want {
				t.Errorf("Temporary(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
