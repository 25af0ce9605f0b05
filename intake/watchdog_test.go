package intake

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

// freezeProxy forwards TCP to a backend; freeze makes every connection
// open at that moment silently dead — what is sent is swallowed, nothing
// comes back, nothing is closed — as a NAT or proxy that dropped the flow
// does. Connections made later work.
type freezeProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	live    []*atomic.Bool
}

func startFreezeProxy(t *testing.T, backend string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezeProxy{ln: ln, backend: backend}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); b.Close() })
			alive := &atomic.Bool{}
			alive.Store(true)
			f.mu.Lock()
			f.live = append(f.live, alive)
			f.mu.Unlock()
			pump := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && alive.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go pump(b, c)
			go pump(c, b)
		}
	}()
	return f
}

func (f *freezeProxy) addr() string { return f.ln.Addr().String() }

func (f *freezeProxy) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.live {
		a.Store(false)
	}
}

// TestIdleSilentlyDead: the connection dies silently during IDLE; the
// poller ends IDLE at the poll interval, the watchdog closes the
// connection that no longer answers, and the poller reconnects and takes
// in the mail that arrived meanwhile.
func TestIdleSilentlyDead(t *testing.T) {
	srv := startMem(t, nil)
	px := startFreezeProxy(t, srv.Addr)
	h := newHarness(t, px.addr(), &simpleHandler{})
	h.cfg.PollInterval = time.Second
	h.cfg.Timeout = 500 * time.Millisecond
	p := h.poller(nil)
	h.run(p)
	testenv.Eventually(t, 20*time.Second, "first contact", func() bool { return p.lastContact.Load() != 0 })
	px.freeze()
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	testenv.Eventually(t, 20*time.Second, "mail taken in after reconnecting", func() bool { return len(h.requests()) == 1 })
	if v := h.metrics.Counter("keydesk_imap_reconnects_total", "").Value(); v < 1 {
		t.Errorf("reconnects_total = %v, want at least 1", v)
	}
}

// TestSilentServer: a server that accepts connections and never speaks
// is given up on at the timeout, again and again, readiness says so, and
// the poller still stops at once when asked.
func TestSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	h := newHarness(t, ln.Addr().String(), &simpleHandler{})
	h.cfg.Timeout = 200 * time.Millisecond
	p := h.poller(nil)
	stop := h.run(p)
	reconnects := h.metrics.Counter("keydesk_imap_reconnects_total", "")
	testenv.Eventually(t, 20*time.Second, "two reconnections", func() bool { return reconnects.Value() >= 2 })
	if err := p.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "no contact") {
		t.Errorf("ready: %v, want no contact", err)
	}
	start := time.Now()
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stopping took %s", d)
	}
}
