package natstest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ConfigTLSDir is where the configs of deploy/nats expect the certificates;
// StartCluster points it at the test's certificates instead.
const ConfigTLSDir = "/etc/nats/tls/"

// ConfigStoreDir is the configs' JetStream store directory; each node of
// the test cluster gets its own.
const ConfigStoreDir = "/var/lib/nats"

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// ConfigDir holds nats-1.conf, nats-2.conf, nats-3.conf and the files
	// they include (deploy/nats).
	ConfigDir string
	// TLSDir holds the certificates WriteCerts made.
	TLSDir string
}

// Cluster is three nats-server processes forming one JetStream cluster.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	Nodes []*Node
}

// Node is one server of the cluster.
type Node struct {
	Name                            string
	ClientPort, RoutePort, HTTPPort int
	conf, store, log                string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// ClientURL is the node's client URL.
func (n *Node) ClientURL() string { return "tls://127.0.0.1:" + strconv.Itoa(n.ClientPort) }

// StartCluster starts the three nodes of o.ConfigDir on loopback ports and
// waits until every one reports itself healthy. The processes are killed
// when the test ends; a node's log is printed if the test failed.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t), dir: t.TempDir()}
	ports := freePorts(t, 9)
	for i := range 3 {
		name := fmt.Sprintf("nats-%d", i+1)
		n := &Node{
			Name: name, ClientPort: ports[3*i], RoutePort: ports[3*i+1], HTTPPort: ports[3*i+2],
			conf:  filepath.Join(c.dir, name, "conf", name+".conf"),
			store: filepath.Join(c.dir, name, "store"),
			log:   filepath.Join(c.dir, name+".log"),
		}
		// Each node gets its own copy, with its own store directory.
		if err := copyConfigs(o.ConfigDir, filepath.Dir(n.conf), strings.NewReplacer(
			ConfigTLSDir, strings.TrimSuffix(o.TLSDir, "/")+"/",
			ConfigStoreDir, n.store,
		)); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(n.log)
				t.Logf("--- %s log (last 4 KiB):\n%s", n.Name, tail(b, 4096))
			}
		}
	})
	for _, n := range c.Nodes {
		c.start(n)
	}
	c.WaitHealthy(60 * time.Second)
	return c
}

// URLs is the comma-separated client URLs of every node, for nats.url.
func (c *Cluster) URLs() string {
	var us []string
	for _, n := range c.Nodes {
		us = append(us, n.ClientURL())
	}
	return strings.Join(us, ",")
}

// Node returns the node called name (nats-1...).
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("natstest: no node %q", name)
	return nil
}

func (c *Cluster) start(n *Node) {
	c.t.Helper()
	var routes []string
	for _, o := range c.Nodes {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(o.RoutePort))
	}
	if err := os.MkdirAll(n.store, 0o700); err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "-c", n.conf,
		"-a", "127.0.0.1", "-p", strconv.Itoa(n.ClientPort),
		"-m", strconv.Itoa(n.HTTPPort),
		"--cluster", "nats://127.0.0.1:"+strconv.Itoa(n.RoutePort),
		"--routes", strings.Join(routes, ","),
		"-l", n.log)
	cmd.Dir = filepath.Dir(n.conf)
	out, err := os.OpenFile(n.log+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("natstest: start %s: %v", n.Name, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
}

// Kill stops node name with SIGKILL, as a crash would, and waits for it to
// be gone.
func (c *Cluster) Kill(name string) {
	c.t.Helper()
	c.Node(name).kill()
}

// Restart starts a killed node again on the same ports and store.
func (c *Cluster) Restart(name string) {
	c.t.Helper()
	c.start(c.Node(name))
}

func (n *Node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	// The ports are free once the process is gone.
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// hasExited reports whether the node's process ended on its own.
func (n *Node) hasExited() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// WaitHealthy waits until every running node answers /healthz with 200:
// JetStream is enabled, the meta group has a leader and its streams are
// current.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		for {
			resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.HTTPPort))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if n.hasExited() {
				b, _ := os.ReadFile(n.log + ".out")
				c.t.Fatalf("natstest: %s exited:\n%s", n.Name, tail(b, 4096))
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("natstest: %s not healthy after %s (last: %v)", n.Name, timeout, statusOf(resp, err))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func statusOf(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// copyConfigs copies every .conf file of src into dst, rewriting paths.
func copyConfigs(src, dst string, paths *strings.Replacer) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		s := paths.Replace(string(b))
		if err := os.WriteFile(filepath.Join(dst, e.Name()), []byte(s), 0o644); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no .conf files in %s", src)
	}
	return nil
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// LogLines returns the lines of every node's log that contain s, e.g.
// "Permissions Violation" to find what a user was refused.
func (c *Cluster) LogLines(s string) []string {
	var out []string
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(n.log)
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(l, s) {
				out = append(out, n.Name+": "+l)
			}
		}
	}
	return out
}

// Dir holds every node's configuration, JetStream store and log: what a
// test searches for data that must never be at rest.
func (c *Cluster) Dir() string { return c.dir }
