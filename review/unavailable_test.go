package review

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// TestStoreUnavailable: while NATS does not answer (a leader election, a
// node restarting), a staff action gets a 503 with Retry-After and a
// sentence, never a 500, and changes nothing; once NATS is back the same
// action succeeds.
func TestStoreUnavailable(t *testing.T) {
	dir := t.TempDir()
	srv, err := queue.StartEmbedded(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	e := newEnvOn(t, q, func(o *Options) { o.RequestTimeout = time.Second })
	req := e.request(nil, "")

	srv.Shutdown()
	srv.WaitForShutdown()
	post := func(path string) (*http.Response, ErrorBody) {
		t.Helper()
		r, _ := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(`{}`))
		r.Header.Set("Authorization", "Bearer "+e.tokens["ada"])
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	for _, path := range []string{"/api/v1/requests/" + req.ID + "/approve", "/api/v1/batches"} {
		resp, body := post(path)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			body.Code != "unavailable" || !strings.Contains(body.Error, "try again") {
			t.Errorf("POST %s with NATS down: %d Retry-After %q %+v", path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}

	// NATS comes back on the same address and store; the client reconnects.
	port := url[strings.LastIndex(url, ":")+1:]
	srv2, err := queue.StartEmbedded(dir, "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)
	if got := e.get(req.ID); got.State != keydesk.StatePendingReview || len(got.Approvals) != 0 {
		t.Fatalf("a refused action changed the record: %s %v", got.State, got.Approvals)
	}
	if bs, err := q.ListBatches(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("a refused batch request left %d records (%v)", len(bs), err)
	}
	if code, body := e.api("ada", "POST", "/api/v1/requests/"+req.ID+"/approve", map[string]string{}); code != http.StatusOK {
		t.Fatalf("approve after NATS came back: %d %v", code, body)
	}
	if code, body := e.api("ada", "POST", "/api/v1/batches", nil); code/100 != 2 {
		t.Fatalf("run batch after NATS came back: %d %v", code, body)
	}
}
