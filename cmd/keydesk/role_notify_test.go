package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestReviewRoleNotifiesOnceAcrossRestart: the review role posts to
// notify.webhook_url once for each request that waits for review, with a
// link from review.base_url; keydesk stopped and started again on the
// same embedded store posts none of them again, and posts new work.
func TestReviewRoleNotifiesOnceAcrossRestart(t *testing.T) {
	var (
		mu    sync.Mutex
		posts = map[string]int{}
		texts []string
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.URL.Path != "/hooks/tok" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		id, _, _ := strings.Cut(body.Text, " ")
		mu.Lock()
		posts[id]++
		texts = append(texts, body.Text)
		mu.Unlock()
	}))
	defer hook.Close()
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return posts[id]
	}

	dir := t.TempDir()
	writePartners(t, dir)
	addUser(t, filepath.Join(dir, "users.yaml"), "ada", "admin")
	if err := os.WriteFile(filepath.Join(dir, "hook.url"), []byte(hook.URL+"/hooks/tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "keydesk.yaml")
	if err := os.WriteFile(cfgPath, []byte("data_dir: data\nreview: {listen: \""+testenv.FreeAddr(t)+"\", base_url: \"https://keydesk.example\"}\n"+
		"notify: {webhook_url_file: hook.url}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	serve := func() (*app, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		apps := make(chan *app, 1)
		served := make(chan error, 1)
		go func() {
			served <- serveRolesKeys(ctx, cfg, slog.New(slog.DiscardHandler), nil, []string{"review"}, func(a *app) error { apps <- a; return nil })
		}()
		var a *app
		select {
		case a = <-apps:
		case err := <-served:
			t.Fatalf("serve: %v", err)
		}
		return a, func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	mk := func(a *app, i int) string {
		r, _, err := a.q.Create(context.Background(), &keydesk.Request{State: keydesk.StatePendingReview, Partner: "acme",
			Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "bot", Requester: "dev@acme.example",
			SourceDate: time.Now().UTC(), SourceKey: "src" + string(rune('a'+i))}, "intake")
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}

	a, stop := serve()
	first := []string{mk(a, 0), mk(a, 1)}
	testenv.Eventually(t, 30*time.Second, "a post for each request", func() bool { return count(first[0]) == 1 && count(first[1]) == 1 })
	stop()

	a, stop = serve()
	defer stop()
	later := mk(a, 2)
	testenv.Eventually(t, 30*time.Second, "a post for the request made after the restart", func() bool { return count(later) == 1 })
	for _, id := range first {
		if n := count(id); n != 1 {
			t.Errorf("%s posted %d times across a restart, want once", id, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != 3 || !strings.Contains(texts[2], "https://keydesk.example/requests/"+later) {
		t.Errorf("posts %q", texts)
	}
}

// TestCheckNotify: `keydesk check --roles review` names a notify.digest
// it cannot read, with the file and the key.
func TestCheckNotify(t *testing.T) {
	for _, tc := range []struct{ digest, want string }{
		{"", ""},
		{"CRON_TZ=UTC 0 9 * * 1-5", ""},
		{"0 25 * * *", `keydesk.yaml: notify.digest: schedule "0 25 * * *"`},
		{"TZ=", `keydesk.yaml: notify.digest: schedule "TZ=" cannot be read`},
	} {
		cfg := config.Default()
		cfg.File = "/etc/keydesk/keydesk.yaml"
		cfg.Notify.Digest = tc.digest
		err := checkNotify(cfg)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkNotify(%q) = %v, want %q", tc.digest, err, tc.want)
		}
	}
}
