// Package queue is keydesk's storage on NATS JetStream: the request records
// (KV, compare-and-set on every change), their audit trail, the outbox work
// queue, raw source mail, batch records and leases.
//
// Invariants: every request change is a compare-and-set on the record's
// revision, so two writers never both win; the audit stream is filled by the
// server itself, sourcing every revision of the requests bucket, so no crash
// between a write and its audit event can lose the event; idempotency lives
// in application state (KV create and CAS), never in acks or in the
// publish-deduplication window alone, since both expire. The package knows
// no role: intake, review, batch and delivery all use it the same way,
// through typed methods and buckets (Bucket); it alone imports the NATS
// client.
package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure Open.
type Options struct {
	// URL of the NATS cluster; empty starts an embedded server.
	URL string
	// CredsFile, TLSCAFile, TLSCert, TLSKey secure a connection to URL.
	CredsFile, TLSCAFile, TLSCert, TLSKey string
	// Replicas of every stream and bucket (1 embedded, 3 on a cluster).
	Replicas int
	// DataDir: the embedded server stores under DataDir/nats.
	DataDir string
	// Listen makes the embedded server listen on host:port as well as in
	// process (port 0 picks one).
	Listen string
	// Name is the client connection name, shown by the server.
	Name string
	// Logger receives connection events.
	Logger *slog.Logger
	// SkipSetup leaves streams and buckets alone: for clients whose NATS
	// account may not create them (least-privilege roles).
	SkipSetup bool
	// AuditMaxBytes bounds the AUDIT stream (nats.audit_max_bytes): past
	// it the oldest events are dropped to make room, so a flood cannot
	// fill the disk. 0 is DefaultAuditMaxBytes.
	AuditMaxBytes int64
	// InboxPrefix replaces _INBOX as the prefix of every reply subject
	// (requests, JetStream API answers, KV watchers, ordered consumers,
	// object store reads), so a role's NATS user can be allowed to
	// subscribe to its own prefix only and never read another role's
	// replies. Empty keeps _INBOX. A subject prefix without wildcards.
	InboxPrefix string
}

// Conn is a connection to JetStream, and the embedded server if it runs one.
type Conn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	srv *server.Server
	log *slog.Logger

	opts Options

	requests *Bucket[keydesk.Request]
	batches  *Bucket[keydesk.Batch]
	threads  *Bucket[keydesk.ThreadEntry]
	index    *Bucket[MessageIndex]
	keys     *Bucket[keydesk.Inventory]
	locks    jetstream.KeyValue
	kvs      map[string]jetstream.KeyValue
	mail     jetstream.ObjectStore

	// Now is the clock; tests replace it.
	Now func() time.Time
}

// ErrConfig marks an Open failure that no retry cures: the options
// themselves (a TLS file, the inbox prefix) are wrong.
var ErrConfig = errors.New("queue: bad nats configuration")

// Open connects to NATS (starting the embedded server when Options.URL is
// empty) and makes sure every stream and bucket exists.
func Open(ctx context.Context, o Options) (*Conn, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Name == "" {
		o.Name = "keydesk"
	}
	if o.AuditMaxBytes == 0 {
		o.AuditMaxBytes = DefaultAuditMaxBytes
	}
	if o.AuditMaxBytes < 0 {
		return nil, fmt.Errorf("queue: audit max bytes %d: use a positive size", o.AuditMaxBytes)
	}
	c := &Conn{log: o.Logger, opts: o, kvs: map[string]jetstream.KeyValue{}, Now: time.Now}
	nopts, err := o.natsOptions()
	if err != nil {
		return nil, err
	}
	nopts = append(nopts,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				o.Logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { o.Logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	)
	url := o.URL
	if url == "" {
		srv, err := StartEmbedded(o.DataDir, o.Listen)
		if err != nil {
			return nil, err
		}
		c.srv = srv
		nopts = append(nopts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("queue: connect to nats %s: %w", redactURL(url), err)
	}
	c.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("queue: jetstream: %w", err)
	}
	c.js = js
	if err := c.setup(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// natsOptions are the connection options Open and Probe share: the
// name, the inbox prefix and, for an external cluster, its credentials and
// TLS, with no retry of a failed first connection.
func (o Options) natsOptions() ([]nats.Option, error) {
	nopts := []nats.Option{nats.Name(o.Name)}
	if o.InboxPrefix != "" {
		if err := ValidInboxPrefix(o.InboxPrefix); err != nil {
			return nil, fmt.Errorf("queue: %w: %w", ErrConfig, err)
		}
		nopts = append(nopts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.URL == "" {
		return nopts, nil
	}
	if o.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCAFile != "" || o.TLSCert != "" {
		tc, err := tlsConfig(o.TLSCAFile, o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		nopts = append(nopts, nats.Secure(tc))
	}
	// No outbound buffer while reconnecting: a publish the caller was told
	// had failed must not land later, when the connection is back (a staff
	// action answered 503 would otherwise happen after all).
	return append(nopts, nats.RetryOnFailedConnect(false), nats.ReconnectBufSize(-1)), nil
}

// StartEmbedded starts a single-node JetStream server storing under
// dataDir/nats, reached in process, and on listen too if it is set. Every
// write is fsynced before it is acknowledged: the default two-minute sync
// interval could lose acknowledged records in a crash.
func StartEmbedded(dataDir, listen string) (*server.Server, error) {
	if dataDir == "" {
		return nil, errors.New("queue: embedded nats needs a data directory")
	}
	sopts := &server.Options{
		ServerName: "keydesk-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "nats"),
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
		DontListen: listen == "",
	}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("queue: nats.listen %q: %w", listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("queue: nats.listen %q: bad port", listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		sopts.Host, sopts.Port = host, p
	}
	if err := os.MkdirAll(sopts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("queue: embedded nats did not start within 30s (is the data directory locked by another keydesk?)")
	}
	return srv, nil
}

// ClientURL is the embedded server's listen URL, or "" when it has none.
func (c *Conn) ClientURL() string {
	if c.srv == nil || c.opts.Listen == "" {
		return ""
	}
	return c.srv.ClientURL()
}

// Embedded reports whether Conn runs its own server.
func (c *Conn) Embedded() bool { return c.srv != nil }

// Ready reports whether JetStream answers.
func (c *Conn) Ready(ctx context.Context) error {
	if c.nc == nil || !c.nc.IsConnected() {
		return errors.New("queue: not connected to nats")
	}
	if _, err := c.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	return nil
}

// Close drains the connection and stops the embedded server.
func (c *Conn) Close() error {
	var err error
	if c.nc != nil {
		if !c.nc.IsClosed() {
			err = c.nc.Drain()
			// Drain is asynchronous: wait for it, bounded.
			deadline := time.Now().Add(5 * time.Second)
			for !c.nc.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			c.nc.Close()
		}
	}
	c.shutdownServer()
	return err
}

func (c *Conn) shutdownServer() {
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}

func tlsConfig(ca, cert, key string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("queue: nats.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("queue: nats.tls_ca_file %s holds no certificate", ca)
		}
		tc.RootCAs = pool
	}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("queue: nats.tls_cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return tc, nil
}

func redactURL(u string) string {
	if u == "" {
		return "(embedded)"
	}
	return u
}
