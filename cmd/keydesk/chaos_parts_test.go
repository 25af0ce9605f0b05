package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// chaosAPI is one environment's simulator, behind a tap that keeps, in
// test memory only, every secret it hands out: the secrets to search for.
type chaosAPI struct {
	api *fake.Server
	url string

	mu      sync.Mutex
	secrets [][]byte
}

func (c *chaosAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/keys" {
		c.api.ServeHTTP(w, r)
		return
	}
	tw := &tapWriter{ResponseWriter: w}
	c.api.ServeHTTP(tw, r)
	var k struct {
		APISecret string `json:"api_secret"`
	}
	if tw.status == http.StatusCreated && json.Unmarshal(tw.body.Bytes(), &k) == nil && k.APISecret != "" {
		c.mu.Lock()
		c.secrets = append(c.secrets, []byte(k.APISecret))
		c.mu.Unlock()
	}
}

func (c *chaosAPI) created() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.secrets)
}

// tapWriter copies an answer as it is written; Unwrap lets the simulator
// still drop the connection (http.ResponseController).
type tapWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *tapWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *tapWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}
func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// chaosEmail is one request email and what it asks for.
type chaosEmail struct {
	messageID string
	raw       []byte
	envs      []keydesk.Environment // one request per environment; none for a refused email
	label     string
}

// chaosInstance is one `keydesk serve` process, started again after each kill.
type chaosInstance struct {
	name, cfg, dataDir, listen string
	logs                       *testenv.Buffer

	cmd       *exec.Cmd
	failpoint string
	starts    int

	// Per start that lived long enough: how long until /healthz and
	// /readyz first answered 200.
	mu             sync.Mutex
	healthy, ready []time.Duration
}

// watchStart times one start of the instance: the first 200 of /healthz,
// then of /readyz, until the process ends.
func (in *chaosInstance) watchStart(started time.Time, dead <-chan struct{}) {
	hc := &http.Client{Timeout: time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		for {
			select {
			case <-dead:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := hc.Get("http://" + in.listen + path)
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		in.mu.Lock()
		if path == "/healthz" {
			in.healthy = append(in.healthy, time.Since(started))
		} else {
			in.ready = append(in.ready, time.Since(started))
		}
		in.mu.Unlock()
	}
}

// chaosExit is an instance's process ending.
type chaosExit struct {
	in  *chaosInstance
	cmd *exec.Cmd
	err error
}

func (in *chaosInstance) start(t *testing.T, bin, failpoint string, exits chan<- chaosExit) {
	t.Helper()
	in.starts++
	fmt.Fprintf(in.logs, "--- %s start %d (failpoint %q)\n", in.name, in.starts, failpoint)
	cmd := exec.Command(bin, "serve", "--config", in.cfg)
	cmd.Env = append(os.Environ(), failpointEnv+"="+failpoint)
	cmd.Stdout, cmd.Stderr = in.logs, in.logs
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.cmd, in.failpoint = cmd, failpoint
	dead := make(chan struct{})
	go in.watchStart(started, dead)
	go func() {
		err := cmd.Wait()
		close(dead)
		exits <- chaosExit{in: in, cmd: cmd, err: err}
	}()
}

// apiStatuses counts the answers staff got from the API during the chaos.
type apiStatuses struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *apiStatuses) record(err error) {
	k := "2xx"
	var ae *apiclient.Error
	switch {
	case errors.As(err, &ae):
		k = fmt.Sprint(ae.Status)
	case err != nil:
		k = "unreachable" // the instance was down
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[k]++
}

// killed reports whether err is the end of a process by SIGKILL.
func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// openChaosBatches lists the batch records, once the cluster answers.
func openChaosBatches(t *testing.T, q *queue.Conn) []*keydesk.Batch {
	t.Helper()
	var out []*keydesk.Batch
	if err := testenv.Poll(30*time.Second, "the batch records", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		out, err = q.ListBatches(ctx)
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// openChaosQueue connects the test to the scenario's NATS, to read the
// request records as they are.
func openChaosQueue(t *testing.T, s chaosSetup, embedded string) *queue.Conn {
	t.Helper()
	o := chaosQueueOptions(s, embedded)
	var q *queue.Conn
	err := testenv.Poll(30*time.Second, "a connection to NATS", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		q, err = queue.Open(ctx, o)
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// maildirMessageIDs returns the Message-ID of every message of a Maildir
// folder.
func maildirMessageIDs(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			f, err := os.Open(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			ids = append(ids, m.Header.Get("Message-ID"))
		}
	}
	return ids
}

// readTree reads every regular file under root into places.
func readTree(t *testing.T, root string, places map[string][]byte) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if path == root && errors.Is(err, fs.ErrNotExist) {
			return nil // nothing was written there
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		places[path] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// chaosQueueOptions are the test's own connection to the scenario's NATS.
func chaosQueueOptions(s chaosSetup, embedded string) queue.Options {
	if s.cluster != nil {
		return queue.Options{URL: s.cluster.URLs(), SkipSetup: true, Replicas: 3, Name: "chaos test",
			TLSCAFile: filepath.Join(s.tlsDir, "ca.pem"), TLSCert: filepath.Join(s.tlsDir, "admin.pem"), TLSKey: filepath.Join(s.tlsDir, "admin-key.pem")}
	}
	return queue.Options{URL: "nats://" + embedded, SkipSetup: true, Name: "chaos test"}
}
