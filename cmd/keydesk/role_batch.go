package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/templates"
)

// requireCredentials makes the batch role's partner registry carry every
// partner environment's keys:manage credentials, at start and at each
// reload: only this role holds them (the other roles run without), so a
// partners.yaml that lacks some is a mistake in the batch role's config.
func requireCredentials(a *app) error {
	path := a.cfg.Path(a.cfg.PartnersFile)
	err := a.partners.require(func(reg *keydesk.Registry) error {
		if err := config.CheckCredentials(path, reg); err != nil {
			return fmt.Errorf("the batch role needs every partner environment's API credentials:\n%w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	return nil
}

// batchOptions are the batch role's settings from the config: what
// serve starts the runner with and `keydesk check` asks batch to judge.
func batchOptions(cfg *config.Config) batch.Options {
	return batch.Options{
		Schedule: cfg.Batch.Schedule, Concurrency: cfg.Batch.Concurrency, SupportAddress: cfg.SMTP.SupportAddress,
		RevokeUndeliveredAfter: cfg.Delivery.RevokeUndeliveredAfter, LeaseTTL: cfg.Batch.LeaseTTL,
		RotationGrace: cfg.Rotation.Grace, RotationMaxAge: cfg.Rotation.MaxAge, RotationRemindBefore: cfg.Rotation.RemindBefore,
		InventoryInterval: cfg.Batch.InventoryInterval,
	}
}

// checkBatch reports the batch settings the role would refuse at start
// (its schedule among them), each naming the file and key.
func checkBatch(cfg *config.Config) error {
	o := batchOptions(cfg)
	return cfg.InFile(o.Validate())
}

// startBatch wires the batch role: the Buildmarkets API per environment
// (one rate limiter each, shared by all partners), the signing key, the
// templates and the metrics.
func startBatch(ctx context.Context, a *app) (func(context.Context) error, error) {
	r, err := newBatchRunner(a)
	if err != nil {
		return nil, err
	}
	return r.Run, nil
}

func newBatchRunner(a *app) (*batch.Runner, error) {
	cfg := a.cfg
	if err := requireCredentials(a); err != nil {
		return nil, err
	}
	tpl, err := templates.Load(cfg.Path(cfg.Templates.Dir))
	if err != nil {
		return nil, err
	}
	if cfg.SigningKey.File == "" {
		return nil, fmt.Errorf("batch: signing_key.file is required: every key delivery is signed")
	}
	signer, err := crypto.LoadSigner(cfg.Path(cfg.SigningKey.File), cfg.SigningKey.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("batch: signing_key: %w", err)
	}
	a.onClose(func() error { signer.Close(); return nil })
	// keydesk's own key expiring would stop every delivery: say so early,
	// in the log at start and as a gauge for an alert rule.
	if exp := signer.Expires(); !exp.IsZero() {
		a.metrics.Gauge("keydesk_signing_key_expiry_timestamp_seconds", "When keydesk's signing key expires (Unix time).").Set(float64(exp.Unix()))
		if left := time.Until(exp); left < 30*24*time.Hour {
			a.log.Warn("keydesk's signing key expires soon: rotate it (docs/operations.md)", "expires", exp.UTC().Format(time.DateOnly), "fingerprint", signer.Fingerprint())
		}
	}

	calls := a.metrics.Counter("keydesk_api_requests_total", "Buildmarkets API calls (each try), by environment, method and HTTP status (0: no answer).", "env", "method", "status")
	secs := a.metrics.Histogram("keydesk_api_seconds", "Buildmarkets API call latency (each try).", nil, "env", "method")
	envs := map[keydesk.Environment]batch.APIEnv{}
	for _, e := range keydesk.Environments {
		c := cfg.API.Env(e)
		envs[e] = batch.APIEnv{BaseURL: c.BaseURL, Timeout: c.Timeout, Limiter: rate.NewLimiter(rate.Limit(c.RateLimit), 1)}
	}
	accounts := batch.NewBMAPI(batch.BMAPIOptions{
		Envs: envs, Logger: a.log,
		Observe: func(env keydesk.Environment, method string, status int, d time.Duration) {
			calls.Inc(string(env), method, strconv.Itoa(status))
			secs.Observe(d.Seconds(), string(env), method)
		},
	})
	o := batchOptions(cfg)
	o.Queue, o.Partners, o.Accounts, o.Classify = a.q, a.partners.Current, accounts, batch.ClassifyBMAPI
	o.Sealer, o.Templates = &batch.PGPSealer{Signer: signer, Templates: tpl}, tpl
	o.Holder, o.Logger, o.Metrics, o.Failpoint = a.holder, a.log.With("role", "batch"), a.metrics, failpointFromEnv()
	r, err := batch.New(o)
	if err != nil {
		return nil, err
	}
	a.metrics.GaugeFunc("keydesk_batch_next_run_timestamp_seconds", "When the next scheduled batch runs (Unix time; 0: no schedule).",
		func() map[string]float64 {
			t := r.NextRun(time.Now())
			if t.IsZero() {
				return map[string]float64{"": 0}
			}
			return map[string]float64{"": float64(t.Unix())}
		})
	return r, nil
}
