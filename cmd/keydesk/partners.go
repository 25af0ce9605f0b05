package main

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
)

// partnerSource holds the current partner registry; SIGHUP reloads it.
type partnerSource struct {
	cfg  *config.Config
	log  *slog.Logger
	keys config.ContactKeyChecker // nil: keys are only read, not checked
	cur  atomic.Pointer[keydesk.Registry]

	mu sync.Mutex
	// checks are what a role running here needs of every registry beyond
	// what the load validates (the batch role: the API credentials).
	checks []func(*keydesk.Registry) error
}

func newPartnerSource(cfg *config.Config, log *slog.Logger, keys config.ContactKeyChecker) (*partnerSource, error) {
	ps := &partnerSource{cfg: cfg, log: log, keys: keys}
	reg, err := ps.load()
	if err != nil {
		return nil, err
	}
	ps.cur.Store(reg)
	return ps, nil
}

func (ps *partnerSource) load() (*keydesk.Registry, error) {
	return config.LoadPartners(ps.cfg.Path(ps.cfg.PartnersFile), ps.keys, time.Now())
}

// Current returns the registry in force.
func (ps *partnerSource) Current() *keydesk.Registry { return ps.cur.Load() }

// require adds check to what every registry must pass to come into force,
// and applies it to the registry in force now: a role calls it as it
// starts, and refuses to start on its error. A reload that fails it is
// refused like a file with problems.
func (ps *partnerSource) require(check func(*keydesk.Registry) error) error {
	if err := check(ps.Current()); err != nil {
		return err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.checks = append(ps.checks, check)
	return nil
}

// Reload reads partners.yaml again. A file with problems, or one that
// fails a role's requirement, is refused, its problems logged, and the
// registry in force kept.
func (ps *partnerSource) Reload() error {
	reg, err := ps.load()
	if err == nil {
		ps.mu.Lock()
		checks := ps.checks
		ps.mu.Unlock()
		var errs []error
		for _, c := range checks {
			errs = append(errs, c(reg))
		}
		err = errors.Join(errs...)
	}
	if err != nil {
		ps.log.Error("partners reload refused: keeping the registry in force", "file", ps.cfg.PartnersFile, "err", err)
		return err
	}
	ps.cur.Store(reg)
	ps.log.Info("partners reloaded", "file", ps.cfg.PartnersFile, "partners", len(reg.Partners))
	return nil
}
