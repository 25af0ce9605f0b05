package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emersion/go-imap/v2"
)

// ProbeResult is what Probe found in the mailbox.
type ProbeResult struct {
	// Mailbox is the one intake reads, and Messages how many it holds.
	Mailbox  string
	Messages uint32
	// Missing lists the processed and rejected mailboxes that do not exist
	// yet: intake creates them at its first connection.
	Missing []string
}

// ProbeError is a failed Probe: Phase says where (connect, login,
// examine, list), so that the caller can say what to fix.
type ProbeError struct {
	Phase string
	Err   error
}

func (e *ProbeError) Error() string { return e.Err.Error() }
func (e *ProbeError) Unwrap() error { return e.Err }

// Probe connects and logs in as the poller does (o.IMAP, o.TLSConfig,
// o.Auth), examines the mailbox read-only, looks for the processed and
// rejected mailboxes, and logs out: `keydesk check --connect`. It reads
// no message and changes nothing. The other fields of o are not needed.
func Probe(ctx context.Context, o Options) (*ProbeResult, error) {
	if o.IMAP.Address == "" {
		return nil, errors.New("intake: imap.address is empty")
	}
	if o.IMAP.Timeout <= 0 {
		o.IMAP.Timeout = 60 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Poller{o: o, log: log}
	s, err := p.connect(ctx)
	if err != nil {
		phase := "connect"
		if le := (*loginError)(nil); errors.As(err, &le) {
			phase = "login"
		}
		return nil, &ProbeError{Phase: phase, Err: err}
	}
	defer s.close()
	cfg := o.IMAP
	res := &ProbeResult{Mailbox: cfg.Mailbox}
	var sel *imap.SelectData
	if err := s.do(ctx, cfg.Timeout, "examine", func() (err error) {
		sel, err = s.c.Select(cfg.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		return err
	}); err != nil {
		return nil, &ProbeError{Phase: "examine", Err: fmt.Errorf("%w (imap.mailbox %q)", err, cfg.Mailbox)}
	}
	res.Messages = sel.NumMessages
	for _, name := range []string{cfg.ProcessedMailbox, cfg.RejectedMailbox} {
		var found []*imap.ListData
		if err := s.do(ctx, cfg.Timeout, "list", func() (err error) {
			found, err = s.c.List("", name, nil).Collect()
			return err
		}); err != nil {
			return nil, &ProbeError{Phase: "list", Err: err}
		}
		if len(found) == 0 {
			res.Missing = append(res.Missing, name)
		}
	}
	return res, nil
}
