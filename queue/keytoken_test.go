package queue

import "testing"

func TestKeyToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "_"},
		{"INBOX", "INBOX"},
		{"a-b_c=d", "a-b_c=d"},
		{"Lists/keys.requests", "Lists_keys_requests"},
		{"a b*>\x00é", "a_b____"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := KeyToken(tt.in); got != tt.want {
				t.Errorf("KeyToken(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
