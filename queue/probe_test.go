package queue_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/queue"
)

// TestProbe dials real embedded servers over TCP: one set up by Open, one
// bare (no stream made), and an address where nothing listens.
func TestProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ready.Close() })
	bare, err := queue.StartEmbedded(t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bare.Shutdown)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "nats://" + ln.Addr().String()
	_ = ln.Close()

	tests := []struct {
		name        string
		url         string
		wantStreams int
		wantErr     string
	}{
		{name: "set up", url: ready.ClientURL(), wantStreams: 12},
		{name: "no streams", url: bare.ClientURL(), wantErr: "12 of keydesk's streams and buckets do not exist: KV_requests, KV_locks"},
		{name: "nothing listens", url: closed, wantErr: "queue: connect to nats " + closed},
		{name: "no url", wantErr: "no nats url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := queue.Probe(ctx, queue.Options{URL: tc.url})
			if tc.wantErr == "" {
				if err != nil || res.Streams != tc.wantStreams || len(res.Missing) != 0 {
					t.Fatalf("Probe = %+v, %v; want %d streams", res, err, tc.wantStreams)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Probe error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
