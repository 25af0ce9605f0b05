package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/buildmarkets/keydesk/bmapi/fake"
)

// runFakeapi serves the simulator until ctx ends (SIGINT or SIGTERM), then
// drains the requests in flight for up to five seconds.
func runFakeapi(ctx context.Context, stdout, stderr io.Writer, args []string) error {
	fs := newFlags("fakeapi", "--listen ADDR --seed seed.json [--state file] [--latency 20ms] [--rate-limit 50]",
		"Serve a simulator of the Buildmarkets keys API (POST/GET /v1/keys, DELETE /v1/keys/{id}) that\n"+
			"follows the published contract: X-API-Key/X-API-Secret authentication, 401/403, revocation.\n"+
			"Point api.<environment>.base_url at the URL it prints. Faults are set at start with the\n"+
			"options below or at any time with POST /_fake/faults; GET /_fake/keys and /_fake/stats show\n"+
			"what happened. See docs/api-client.md.")
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:18080", "`address` to listen on (port 0 picks a free port)")
	seedPath := fs.String("seed", "", "seed `file`: accounts and their keys:manage keys (JSON, required)")
	statePath := fs.String("state", "", "state `file` keeping keys across restarts (secrets only as hashes)")
	latency := fs.Duration("latency", 0, "delay every API request by this `duration`")
	rateLimit := fs.Float64("rate-limit", 0, "admit this many API requests per `second`, answer the rest 429 (0: no limit)")
	envelope := fs.String("list-envelope", "", "answer GET /v1/keys as {\"`name`\": [...]} instead of a bare array")
	logLevel := fs.String("log-level", "info", "log `level`: debug (a line per request), info, warn, error")
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *seedPath == "" {
		return errors.New("--seed is required: a JSON file such as " +
			`{"accounts":[{"id":"acme","manager_keys":[{"api_key":"bm_key_acme","api_secret":"bm_secret_acme","scopes":["keys:manage"]}]}]}`)
	}
	if *latency < 0 || *rateLimit < 0 {
		return errors.New("--latency and --rate-limit must not be negative")
	}
	seed, err := fake.LoadSeed(*seedPath)
	if err != nil {
		return err
	}
	log := fakeapiLogger(stderr, *logLevel)
	sim, err := fake.New(fake.Options{Seed: seed, StatePath: *statePath, Logger: log,
		Latency: *latency, RateLimit: *rateLimit, ListEnvelope: *envelope})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("fakeapi: listening beyond loopback: anyone who reaches it can set faults at /_fake/faults",
			slog.String("address", ln.Addr().String()))
	}
	hs := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Fprintf(stdout, "keydesk fakeapi: listening on http://%s\n", ln.Addr())
	log.Info("fakeapi: serving", slog.String("url", "http://"+ln.Addr().String()),
		slog.Int("accounts", len(seed.Accounts)), slog.String("state", *statePath))

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	<-served
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	log.Info("fakeapi: stopped", slog.Int("requests", sim.Stats().Requests))
	return nil
}

// fakeapiLogger logs to stderr as newLogger does on a file, and as text on
// any other writer (the tests').
func fakeapiLogger(stderr io.Writer, level string) *slog.Logger {
	if f, ok := stderr.(*os.File); ok {
		return newLogger(f, level, "")
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
}
