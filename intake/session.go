package intake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/mailauth"
)

// conn is one IMAP connection with the mailbox selected.
type conn struct {
	p       *Poller
	c       *imapclient.Client
	newMail chan struct{} // a server notification said the mailbox changed
	uidVal  uint32
	canMove bool
	uidPlus bool
	hasIdle bool
	filed   []uint32 // UIDs moved out of the inbox by the current chunk
}

// session connects, selects the mailbox and processes it until the
// connection fails or ctx ends.
func (p *Poller) session(ctx context.Context) error {
	s, err := p.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.open(ctx); err != nil {
		return err
	}
	for {
		if err := s.scan(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := p.o.IMAP.PollInterval
		if t, ok := p.nextRetry(); ok {
			wait = max(min(wait, time.Until(t)), 10*time.Millisecond)
		}
		if err := s.wait(ctx, wait); err != nil {
			return err
		}
	}
}

// do runs one IMAP exchange under a watchdog: if it takes longer than d, or
// ctx ends first, the connection is closed, which ends the exchange with an
// error. go-imap has no per-command context of its own.
func (s *conn) do(ctx context.Context, d time.Duration, what string, fn func() error) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	stop := context.AfterFunc(wctx, func() { _ = s.c.Close() })
	start := time.Now()
	err := fn()
	s.p.log.Debug("imap", "op", what, "took", time.Since(start), "err", err)
	if !stop() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("intake: imap %s: no answer within %s: connection closed", what, d)
	}
	if err != nil {
		return fmt.Errorf("intake: imap %s: %w", what, err)
	}
	s.p.contact()
	return nil
}

func (p *Poller) connect(ctx context.Context) (*conn, error) {
	s := &conn{p: p, newMail: make(chan struct{}, 1)}
	cfg := p.o.IMAP
	opts := &imapclient.Options{
		TLSConfig:   p.o.TLSConfig,
		Dialer:      &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second},
		WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			// Runs on the reader goroutine: only signal, never send a command.
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case s.newMail <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	if opts.TLSConfig == nil && cfg.Security != mailauth.SecurityNone {
		host, _, _ := net.SplitHostPort(cfg.Address)
		opts.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	type dialed struct {
		c   *imapclient.Client
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		var c *imapclient.Client
		var err error
		switch cfg.Security {
		case mailauth.SecurityTLS:
			c, err = imapclient.DialTLS(cfg.Address, opts)
		case mailauth.SecurityStartTLS:
			c, err = imapclient.DialStartTLS(cfg.Address, opts)
		case mailauth.SecurityNone:
			if host, _, serr := net.SplitHostPort(cfg.Address); serr != nil || !mailauth.IsLoopback(host) {
				err = fmt.Errorf("security none is allowed only to a loopback address, not %s: use tls or starttls", cfg.Address)
			} else {
				c, err = imapclient.DialInsecure(cfg.Address, opts)
			}
		default:
			err = fmt.Errorf("imap.security %q is not one of tls, starttls, none", cfg.Security)
		}
		ch <- dialed{c, err}
	}()
	var d dialed
	select {
	case d = <-ch:
	case <-ctx.Done():
		go func() {
			if d := <-ch; d.c != nil {
				_ = d.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if d.err != nil {
		return nil, fmt.Errorf("intake: connect to %s: %w", cfg.Address, d.err)
	}
	s.c = d.c
	err := s.do(ctx, cfg.Timeout, "greeting", s.c.WaitGreeting)
	if err == nil {
		err = s.login(ctx)
	}
	if err != nil {
		_ = s.c.Close()
		return nil, err
	}
	return s, nil
}

func (s *conn) login(ctx context.Context) error {
	p := s.p
	cfg := p.o.IMAP
	var err error
	if p.o.Auth != nil {
		sc, aerr := p.o.Auth(ctx)
		if aerr != nil {
			return &loginError{fmt.Errorf("intake: imap credentials: %w", aerr)}
		}
		if sc == nil { // auth none: PREAUTH or nothing to do
			return nil
		}
		err = s.do(ctx, cfg.Timeout, "authenticate", func() error { return s.c.Authenticate(sc) })
	} else {
		err = s.do(ctx, cfg.Timeout, "login", func() error { return s.c.Login(cfg.Username, cfg.Password.Reveal()).Wait() })
	}
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && p.o.AuthFailed != nil {
			p.o.AuthFailed()
		}
		return &loginError{fmt.Errorf("intake: log in to %s as %s: %w", cfg.Address, cfg.Username, err)}
	}
	return nil
}

// loginError marks a failed login, so that a probe can tell refused
// credentials from a server it could not reach.
type loginError struct{ err error }

func (e *loginError) Error() string { return e.err.Error() }
func (e *loginError) Unwrap() error { return e.err }

func (s *conn) close() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.c.Logout().Wait()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	_ = s.c.Close()
}

// open makes sure the destination mailboxes exist, selects the inbox and
// checks its UIDVALIDITY against the one remembered.
func (s *conn) open(ctx context.Context) error {
	p := s.p
	cfg := p.o.IMAP
	var caps imap.CapSet
	if err := s.do(ctx, cfg.Timeout, "capability", func() error {
		if caps = s.c.Caps(); caps == nil {
			return errors.New("the server did not list its capabilities")
		}
		return nil
	}); err != nil {
		return err
	}
	s.canMove = caps.Has(imap.CapMove)
	s.uidPlus = caps.Has(imap.CapUIDPlus)
	s.hasIdle = caps.Has(imap.CapIdle) && !p.o.NoIdle
	for _, name := range []string{cfg.ProcessedMailbox, cfg.RejectedMailbox} {
		var found []*imap.ListData
		err := s.do(ctx, cfg.Timeout, "list", func() (err error) {
			found, err = s.c.List("", name, nil).Collect()
			return err
		})
		if err != nil {
			return err
		}
		if len(found) > 0 {
			continue
		}
		if err := s.do(ctx, cfg.Timeout, "create "+name, func() error { return s.c.Create(name, nil).Wait() }); err != nil {
			return err
		}
		p.log.Info("created mailbox", "name", name)
	}
	var sel *imap.SelectData
	err := s.do(ctx, cfg.Timeout, "select", func() (err error) {
		sel, err = s.c.Select(cfg.Mailbox, nil).Wait()
		return err
	})
	if err != nil {
		return err
	}
	s.uidVal = sel.UIDValidity
	return s.checkUIDValidity(ctx)
}

func (s *conn) checkUIDValidity(ctx context.Context) error {
	p := s.p
	mailbox := p.o.IMAP.Mailbox
	st, err := loadMailboxState(ctx, p.mailbox, mailbox)
	if err != nil {
		return err
	}
	if st != nil && st.UIDValidity == s.uidVal {
		return nil
	}
	if st != nil {
		// UIDs from before mean nothing now. Every message still in the
		// inbox is scanned again; creation is idempotent by source.
		p.log.Warn("mailbox UIDVALIDITY changed: rescanning it", "was", st.UIDValidity, "now", s.uidVal)
		p.resetRetries()
		ev := keydesk.Event{Ref: "intake", Actor: p.o.Actor, Action: "uidvalidity-changed",
			Change: fmt.Sprintf("mailbox %s: UIDVALIDITY %d → %d; rescanned", mailbox, st.UIDValidity, s.uidVal)}
		if err := p.o.Queue.Record(ctx, "system", ev); err != nil {
			return err
		}
	}
	return saveMailboxState(ctx, p.mailbox, &MailboxState{Mailbox: mailbox, UIDValidity: s.uidVal, SeenAt: p.o.Now().UTC()})
}

// wait returns when the mailbox may have new mail: a server notification
// under IDLE, or d elapsed. Without IDLE it just waits; the next scan's
// SEARCH proves the connection alive.
func (s *conn) wait(ctx context.Context, d time.Duration) error {
	select {
	case <-s.newMail:
		return nil
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	if !s.hasIdle {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		case <-s.c.Closed():
			return errors.New("intake: imap connection closed by the server")
		}
	}
	var idle *imapclient.IdleCommand
	if err := s.do(ctx, s.p.o.IMAP.Timeout, "idle", func() (err error) {
		idle, err = s.c.Idle()
		return err
	}); err != nil {
		return err
	}
	var closed bool
	select {
	case <-ctx.Done():
	case <-timer.C:
	case <-s.newMail:
	case <-s.c.Closed():
		closed = true
	}
	// Ending IDLE can hang on a dead connection (go-imap #668): bound it.
	err := s.do(context.WithoutCancel(ctx), s.p.o.IMAP.Timeout, "end idle", func() error {
		if err := idle.Close(); err != nil {
			return err
		}
		return idle.Wait()
	})
	if closed {
		return errors.New("intake: imap connection closed by the server during IDLE")
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// scan processes every message in the inbox, in UID order, in chunks.
func (s *conn) scan(ctx context.Context) error {
	p := s.p
	var uids []imap.UID
	err := s.do(ctx, p.o.IMAP.Timeout, "search", func() error {
		data, err := s.c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		if err != nil {
			return err
		}
		uids = data.AllUIDs()
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(uids)
	p.pruneRetries(uids)
	unended := s.unendedAttempts(ctx, uids)
	uids = slices.DeleteFunc(uids, func(u imap.UID) bool { return p.retryLater(uint32(u)) })
	// Messages that were in hand when the connection broke, or when the
	// process ended, go first, each on its own, so that one that breaks it
	// again is singled out (and the others are not counted with it).
	suspect := func(u imap.UID) bool { return p.fetchFailures(uint32(u)) > 0 || unended[uint32(u)] > 0 }
	suspects := slices.DeleteFunc(slices.Clone(uids), func(u imap.UID) bool { return !suspect(u) })
	uids = slices.DeleteFunc(uids, suspect)
	chunks := make([][]imap.UID, 0, len(suspects)+len(uids)/p.o.BatchSize+1)
	for _, u := range suspects {
		chunks = append(chunks, []imap.UID{u})
	}
	chunks = slices.AppendSeq(chunks, slices.Chunk(uids, p.o.BatchSize))
	for _, chunk := range chunks {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		stop, err := s.chunk(ctx, chunk)
		if err != nil {
			if ctx.Err() == nil {
				for _, u := range chunk {
					p.noteFetchFailure(uint32(u))
				}
			}
			return err
		}
		if stop {
			return nil // a temporary failure: wait before going on
		}
	}
	return nil
}

// unendedAttempts returns the counts of attempts that did not end, by UID,
// and forgets those of messages no longer in the inbox (uids, sorted). A
// queue that cannot say is logged and read as none: the attempts of the
// chunks wait for the queue anyway.
func (s *conn) unendedAttempts(ctx context.Context, uids []imap.UID) map[uint32]int {
	p := s.p
	counts, err := p.attempts.Load(ctx, s.uidVal)
	if err != nil {
		p.log.Warn("attempt counts not read", "err", err)
		return nil
	}
	var gone []uint32
	for u := range counts {
		if _, found := slices.BinarySearch(uids, imap.UID(u)); !found {
			gone = append(gone, u)
		}
	}
	if len(gone) > 0 {
		if err := p.attempts.End(ctx, s.uidVal, gone, nil); err != nil {
			p.log.Warn("attempt counts of emails no longer in the inbox not forgotten", "err", err)
		}
	}
	return counts
}

// moveTo returns the mailbox for a disposition.
func (s *conn) moveTo(d Disposition) string {
	if d == Rejected {
		return s.p.o.IMAP.RejectedMailbox
	}
	return s.p.o.IMAP.ProcessedMailbox
}

// move takes messages out of the inbox. Without MOVE it copies, flags them
// \Deleted and expunges them by UID; without UIDPLUS a plain EXPUNGE would
// also remove every other \Deleted message, so it is sent only when the
// messages are the only ones flagged — otherwise they stay flagged (the
// scan skips \Deleted messages) for whoever expunges the mailbox.
func (s *conn) move(ctx context.Context, uids []imap.UID, dest string) error {
	if len(uids) == 0 {
		return nil
	}
	set := imap.UIDSetNum(uids...)
	t := s.p.o.IMAP.Timeout
	if s.canMove {
		return s.do(ctx, t, "move to "+dest, func() error {
			_, err := s.c.Move(set, dest).Wait()
			return err
		})
	}
	if err := s.do(ctx, t, "copy to "+dest, func() error {
		_, err := s.c.Copy(set, dest).Wait()
		return err
	}); err != nil {
		return err
	}
	if err := s.do(ctx, t, "store \\Deleted", func() error {
		return s.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	}); err != nil {
		return err
	}
	if s.uidPlus {
		return s.do(ctx, t, "uid expunge", func() error { return s.c.UIDExpunge(set).Close() })
	}
	var flagged []imap.UID
	if err := s.do(ctx, t, "search deleted", func() error {
		data, err := s.c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		if err == nil {
			flagged = data.AllUIDs()
		}
		return err
	}); err != nil {
		return err
	}
	for _, u := range flagged {
		if !slices.Contains(uids, u) {
			s.p.log.Warn("server has no UIDPLUS and other messages are flagged \\Deleted: leaving ours flagged, not expunging",
				"uids", len(uids), "dest", dest)
			return nil
		}
	}
	return s.do(ctx, t, "expunge", func() error { return s.c.Expunge().Close() })
}
