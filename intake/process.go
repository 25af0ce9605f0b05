package intake

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/redact"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// maxHeaderPeek bounds the header read of a message too large to download.
const maxHeaderPeek = 64 << 10

// spooled is one message downloaded to a spool file.
type spooled struct {
	uid      imap.UID
	size     int64
	date     time.Time
	file     string
	digest   string
	tooLarge bool // the server sent more than it announced
	// data is the email as redactSpool read it (redacted), when it was
	// small enough to read whole: the handler reads it from memory
	// rather than from the file again.
	data []byte
}

// open reads the spooled email: from memory when it is there.
func (sp *spooled) open() (io.ReadCloser, error) {
	if sp.data != nil {
		return io.NopCloser(bytes.NewReader(sp.data)), nil
	}
	return os.Open(sp.file)
}

type sizeInfo struct {
	size int64
	date time.Time
}

// chunk processes a few messages: their sizes, their bodies into the spool,
// their records into the queue, then their moves. It reports stop when a
// temporary failure says to wait before trying more.
//
// An attempt at each message is counted in the queue before anything else
// and ended after the moves: messages moved out are forgotten, the others
// counted one less. Only an attempt the process did not survive stays
// counted, and a message with max_attempts of those is set aside unparsed.
func (s *conn) chunk(ctx context.Context, uids []imap.UID) (stop bool, err error) {
	p := s.p
	ids := make([]uint32, len(uids))
	for i, u := range uids {
		ids[i] = uint32(u)
	}
	counts, err := p.attempts.Begin(ctx, s.uidVal, ids)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// The queue is failing: storing would fail too. Wait, as for that.
		for _, u := range ids {
			p.noteRetry(u)
		}
		p.log.Warn("emails not processed: will try again", "uids", len(ids), "err", err)
		return true, nil
	}
	s.filed = nil
	stop, err = s.work(ctx, uids, counts)
	var hook *hookError
	if errors.As(err, &hook) {
		return stop, err // a test's stand-in for the process ending here
	}
	undo := slices.DeleteFunc(ids, func(u uint32) bool { return slices.Contains(s.filed, u) })
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.o.IMAP.Timeout)
	defer cancel()
	if eerr := p.attempts.End(ectx, s.uidVal, s.filed, undo); eerr != nil {
		// The counts stay one too high: at worst a message that fails this
		// way again and again is set aside early, with an alert.
		p.log.Warn("attempts not ended", "uids", len(ids), "err", eerr)
	}
	return stop, err
}

// work is chunk after the attempts are counted; counts are the attempts
// begun at each message, this one included. Its phases: set aside what
// must not be downloaded, store the rest, then move what was done.
func (s *conn) work(ctx context.Context, uids []imap.UID, counts map[uint32]int) (stop bool, err error) {
	if len(uids) == 1 {
		if n := s.p.fetchFailures(uint32(uids[0])); n >= maxFetchFailures {
			return s.setAsideBroken(ctx, uids[0], n)
		}
	}
	sizes, err := s.fetchSizes(ctx, uids)
	if err != nil {
		return false, err
	}
	mv := &moves{dest: map[string][]imap.UID{}}
	small, stop, err := s.setAsideUndownloadable(ctx, uids, sizes, counts, mv)
	if err == nil && !stop && len(small) > 0 {
		stop, err = s.storeAll(ctx, small, sizes, mv)
	}
	if err != nil {
		return false, err
	}
	return s.finish(ctx, mv.dest, mv.done, stop)
}

// moves are the messages done, by the mailbox each moves to.
type moves struct {
	dest map[string][]imap.UID
	done []uint32
}

func (mv *moves) add(mailbox string, u imap.UID) {
	mv.dest[mailbox] = append(mv.dest[mailbox], u)
	mv.done = append(mv.done, uint32(u))
}

// setAsideBroken sets aside a message whose every attempt broke the
// connection, without asking the server anything about it.
func (s *conn) setAsideBroken(ctx context.Context, u imap.UID, failures int) (bool, error) {
	d, err := s.refused(ctx, u, sizeInfo{}, fmt.Errorf("the connection to the mail server broke each of the %d times keydesk read it", failures), false)
	if err != nil {
		if temporary(ctx, err) {
			s.p.noteRetry(uint32(u))
			return true, nil
		}
		return false, err
	}
	return s.finish(ctx, map[string][]imap.UID{d: {u}}, []uint32{uint32(u)}, false)
}

// fetchSizes asks the server for each message's size and arrival date; a
// message expunged meanwhile has none.
func (s *conn) fetchSizes(ctx context.Context, uids []imap.UID) (map[imap.UID]sizeInfo, error) {
	set := imap.UIDSetNum(uids...)
	sizes := map[imap.UID]sizeInfo{}
	err := s.do(ctx, s.p.o.IMAP.Timeout, "fetch sizes", func() error {
		msgs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true}).Collect()
		for _, m := range msgs {
			sizes[m.UID] = sizeInfo{m.RFC822Size, m.InternalDate}
		}
		return err
	})
	return sizes, err
}

// setAsideUndownloadable sets aside each message attempted max_attempts
// times already, and each larger than hard_max_message_bytes, unread. It
// returns the others, to download; stop when a temporary failure says to
// wait before trying more.
func (s *conn) setAsideUndownloadable(ctx context.Context, uids []imap.UID, sizes map[imap.UID]sizeInfo, counts map[uint32]int, mv *moves) (small []imap.UID, stop bool, err error) {
	p := s.p
	for _, u := range uids {
		si, ok := sizes[u]
		if !ok {
			continue // expunged meanwhile
		}
		var d string
		switch n := counts[uint32(u)] - 1; {
		case n >= p.o.IMAP.MaxAttempts:
			d, err = s.poison(ctx, u, si, n)
		case si.size > p.o.IMAP.HardMaxMessageBytes:
			d, err = s.oversize(ctx, u, si)
		default:
			small = append(small, u)
			continue
		}
		if err != nil {
			if temporary(ctx, err) {
				p.log.Warn("email not processed: will try again", "uid", u, "err", err, "retry_in", p.noteRetry(uint32(u)))
				return nil, true, nil
			}
			return nil, false, err
		}
		mv.add(d, u)
	}
	return small, false, nil
}

// stored is where one message goes once stored, or why it was not.
type stored struct {
	dest string
	err  error
}

// storeAll downloads the messages to the spool and stores their records.
// It returns stop when the queue is failing: every email would; wait.
func (s *conn) storeAll(ctx context.Context, small []imap.UID, sizes map[imap.UID]sizeInfo, mv *moves) (stop bool, err error) {
	p := s.p
	files, refused, err := s.downloadAll(ctx, small, sizes)
	defer func() {
		for _, f := range files {
			_ = os.Remove(f.file)
		}
	}()
	if err != nil {
		return false, err
	}
	results := s.storeEach(ctx, small, sizes, files, refused)
	for i, u := range small {
		r := results[i]
		switch {
		case r.err == errGone:
		case r.err == nil:
			mv.add(r.dest, u)
		case temporary(ctx, r.err):
			wait := p.noteRetry(uint32(u))
			p.log.Warn("email not processed: will try again", "uid", u, "err", r.err, "retry_in", wait)
			var se *storeError
			if errors.As(r.err, &se) || ctx.Err() != nil {
				stop = true // the queue is failing: every email would; wait
			}
		default:
			return false, r.err
		}
	}
	return stop, nil
}

// storeEach stores each message, or sets aside one the server refused.
// Storing is bound by the queue's synchronous writes, not by CPU: several
// emails are stored at once. Each is independent; the moves wait for all.
func (s *conn) storeEach(ctx context.Context, small []imap.UID, sizes map[imap.UID]sizeInfo, files map[imap.UID]*spooled, refused map[imap.UID]refusal) []stored {
	p := s.p
	results := make([]stored, len(small))
	sem := make(chan struct{}, p.o.Workers)
	var wg sync.WaitGroup
	for i, u := range small {
		if r, ok := refused[u]; ok {
			d, err := s.refused(ctx, u, sizes[u], r.cause, r.header)
			results[i] = stored{d, err}
			continue
		}
		m, ok := files[u]
		if !ok {
			results[i].err = errGone // expunged meanwhile
			continue
		}
		m.date = sizes[u].date
		wg.Add(1)
		sem <- struct{}{}
		w := p.inFlight.acquire(m.size)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer p.inFlight.release(w)
			d, err := s.process(ctx, m)
			results[i] = stored{d, err}
		}()
	}
	wg.Wait()
	return results
}

// byteBudget bounds the bytes of the emails being stored at once: storing
// holds part of each email in memory (queue client and server buffers), so
// small emails go many at a time and a large one alone.
type byteBudget struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int64
	max  int64
}

func newByteBudget(max int64) *byteBudget {
	b := &byteBudget{free: max, max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits until n bytes (at most the whole budget) are free and
// takes them; it returns what it took, for release.
func (b *byteBudget) acquire(n int64) int64 {
	n = max(min(n, b.max), 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	return n
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

var errGone = errors.New("intake: message expunged meanwhile")

// finish moves what has been stored: the records are durable, so nothing is
// lost if this is interrupted; the next scan finds the emails again and
// stores nothing twice.
func (s *conn) finish(ctx context.Context, dest map[string][]imap.UID, done []uint32, stop bool) (bool, error) {
	p := s.p
	if len(done) == 0 {
		return stop, nil
	}
	if p.beforeMove != nil {
		if err := p.beforeMove(done); err != nil {
			return stop, &hookError{err}
		}
	}
	// Moving completes even on shutdown: the work is done, and leaving the
	// emails would only make the next start process them again.
	mctx := context.WithoutCancel(ctx)
	for _, name := range []string{p.o.IMAP.ProcessedMailbox, p.o.IMAP.RejectedMailbox} {
		if err := s.move(mctx, dest[name], name); err != nil {
			return stop, err
		}
	}
	for _, u := range done {
		p.clearRetry(u)
	}
	s.filed = append(s.filed, done...)
	return stop, nil
}

func temporary(ctx context.Context, err error) bool {
	return errors.Is(err, ErrTemporary) || ctx.Err() != nil
}

// maxFetchFailures: a message whose processing, alone, has broken the
// connection this many times is set aside without being fetched again.
// Some servers (Dovecot) drop the connection when they cannot read a
// message's file; without this, one damaged message would stop the inbox.
const maxFetchFailures = 2

// refusal is why a message is set aside undownloaded; header says whether
// asking the server for its header is safe.
type refusal struct {
	cause  error
	header bool
}

// downloadAll spools the bodies of uids in one command. A message the
// server answers NO for is fetched again alone, and set aside with the
// server's answer if it is refused again. An error means the connection is
// gone: nothing has been stored yet, so nothing is lost.
func (s *conn) downloadAll(ctx context.Context, uids []imap.UID, sizes map[imap.UID]sizeInfo) (map[imap.UID]*spooled, map[imap.UID]refusal, error) {
	refused := map[imap.UID]refusal{}
	var total int64
	for _, u := range uids {
		total += sizes[u].size
	}
	files, err := s.download(ctx, uids, total)
	if err == nil {
		return files, refused, nil
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return files, nil, err
	}
	for _, u := range uids {
		if _, ok := files[u]; ok {
			continue
		}
		one, err := s.download(ctx, []imap.UID{u}, sizes[u].size)
		maps.Copy(files, one)
		if err != nil {
			if !errors.As(err, &ie) {
				return files, nil, err
			}
			refused[u] = refusal{cause: err, header: true}
		}
	}
	return files, refused, nil
}

// download streams the bodies of uids into spool files, one FETCH for all.
func (s *conn) download(ctx context.Context, uids []imap.UID, total int64) (map[imap.UID]*spooled, error) {
	p := s.p
	files := map[imap.UID]*spooled{}
	// A slow link still gets time in proportion to the bytes (64 KiB/s).
	timeout := p.o.IMAP.Timeout + time.Duration(total/(64<<10))*time.Second
	section := &imap.FetchItemBodySection{Peek: true}
	buf := make([]byte, 64<<10)
	// Bytes of this FETCH's emails that may be kept in memory as well
	// as spooled (in_flight_bytes): the rest are read from their files.
	keep := p.o.InFlightBytes
	err := s.do(ctx, timeout, "fetch bodies", func() error {
		cmd := s.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
		defer cmd.Close()
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			sp, err := p.spool(msg, buf, &keep)
			if sp != nil && sp.uid != 0 {
				files[sp.uid] = sp
			} else if sp != nil {
				_ = os.Remove(sp.file)
			}
			if err != nil {
				return err
			}
		}
		return cmd.Close()
	})
	return files, err
}

// spool writes one FETCH response's body to a new spool file, hashing it,
// reading at most hard_max_message_bytes+1 bytes into the file: an email
// larger than max_message_bytes is spooled whole (on disk, never in
// memory) so that its text is read; only its stored copy is cut.
func (p *Poller) spool(msg *imapclient.FetchMessageData, buf []byte, keep *int64) (*spooled, error) {
	f, err := os.CreateTemp(p.o.SpoolDir, "msg-*")
	if err != nil {
		return nil, fmt.Errorf("intake: spool: %w", err)
	}
	sp := &spooled{file: f.Name()}
	h := sha256.New()
	limit := p.o.IMAP.HardMaxMessageBytes
	var werr error
	for {
		item := msg.Next()
		if item == nil {
			break
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			sp.uid = it.UID
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				continue
			}
			// An email small enough to be read whole is kept in memory
			// too: redactSpool reads it from there.
			var mem *bytes.Buffer
			dst := io.MultiWriter(f, h)
			if size := it.Literal.Size(); size <= p.o.IMAP.MaxMessageBytes && size <= *keep {
				*keep -= size
				mem = bytes.NewBuffer(make([]byte, 0, size))
				dst = io.MultiWriter(f, h, mem)
			}
			n, err := io.CopyBuffer(dst, io.LimitReader(it.Literal, limit+1), buf)
			if mem != nil && int64(mem.Len()) == n && n <= p.o.IMAP.MaxMessageBytes {
				sp.data = mem.Bytes()
			}
			sp.size = n
			if n > limit {
				sp.tooLarge = true
				sp.size = it.Literal.Size()
			}
			if err != nil {
				werr = err
			}
		}
	}
	if err := f.Close(); err != nil && werr == nil {
		werr = err
	}
	sp.digest = hex.EncodeToString(h.Sum(nil))
	if werr != nil {
		return sp, fmt.Errorf("intake: spool uid %d: %w", sp.uid, werr)
	}
	return sp, nil
}

// process stores what one email becomes and says where it goes.
func (s *conn) process(ctx context.Context, sp *spooled) (string, error) {
	p := s.p
	start := time.Now()
	exposed, err := p.redactSpool(sp)
	if err != nil {
		return "", err
	}
	defer func() { sp.data = nil }()
	m := &Message{
		Mailbox: p.o.IMAP.Mailbox, UIDValidity: s.uidVal, UID: uint32(sp.uid),
		Size: sp.size, InternalDate: sp.date, Digest: sp.digest,
		open: sp.open,
	}
	log := p.log.With("uid", sp.uid, "size", sp.size)
	var dec *Decision
	if sp.tooLarge {
		hdr, _ := readHead(sp.file)
		dec = tooLargeDecision(hdr, m, p.o.IMAP.HardMaxMessageBytes)
	} else {
		var err error
		dec, err = p.handle(ctx, m)
		if err != nil {
			if temporary(ctx, err) {
				return "", err
			}
			log.Warn("email cannot be read: setting it aside", "err", err)
			hdr, _ := readHead(sp.file)
			dec = unreadableDecision(hdr, m, err)
		}
	}
	if exposed != nil {
		p.exposures(m, dec, exposed)
	}
	handled := time.Since(start)
	ids, err := p.store(ctx, m, dec, !sp.tooLarge, sp.file)
	if err != nil {
		return "", err
	}
	log.Debug("email timing", "handle", handled, "store", time.Since(start)-handled)
	p.seconds.Observe(time.Since(start).Seconds())
	p.emails.Inc(dec.Outcome)
	log.Info("email taken in", "outcome", dec.Outcome, "message_id", dec.MessageID, "requests", ids, "to", s.moveTo(dec.Disposition))
	return s.moveTo(dec.Disposition), nil
}

// handle runs the Handler, turning a panic into an error.
func (p *Poller) handle(ctx context.Context, m *Message) (dec *Decision, err error) {
	defer func() {
		if v := recover(); v != nil {
			dec, err = nil, &PanicError{Value: v}
		}
	}()
	dec, err = p.o.Handler.Handle(ctx, m)
	if err == nil && (dec == nil || dec.SourceKey == "") {
		return nil, errors.New("intake: handler returned no decision or no source key")
	}
	if err == nil && dec.Disposition != Processed && dec.Disposition != Rejected {
		return nil, fmt.Errorf("intake: handler returned disposition %q", dec.Disposition)
	}
	return dec, err
}

// store makes a decision durable: the raw mail, the requests, the reply,
// the intake record. Every step is idempotent, so a retry after a crash
// stores nothing twice. It runs to completion even when ctx ends (within
// the operation timeout): a half-stored email would only be redone.
func (p *Poller) store(ctx context.Context, m *Message, dec *Decision, keepRaw bool, file string) (ids []string, err error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*p.o.IMAP.Timeout)
	defer cancel()
	tmp := func(what string, err error) error {
		return &storeError{fmt.Errorf("intake: %s: %w: %w", what, ErrTemporary, err)}
	}
	ref := queue.MailRef(dec.SourceKey)
	stored := false
	if keepRaw {
		f, err := os.Open(file)
		if err != nil {
			return nil, tmp("reopen spool", err)
		}
		err = p.o.Queue.PutMail(sctx, ref, keptCopy(f, m.Size, p.o.IMAP.MaxMessageBytes), p.o.IMAP.MaxMessageBytes)
		_ = f.Close()
		if err != nil && !errors.Is(err, queue.ErrMailTooLarge) {
			return nil, tmp("store raw mail", err)
		}
		stored = err == nil
	}
	var saved []*keydesk.Request
	for _, r := range dec.Requests {
		r = r.Clone()
		// The queue derives the ID and salts one that collides with
		// another email's; a preset ID would fail there instead.
		r.ID = ""
		if stored {
			r.MailRef = ref
		}
		got, _, err := p.o.Queue.Create(sctx, r, p.o.Actor)
		if err != nil {
			return nil, tmp("create request", err)
		}
		ids = append(ids, got.ID)
		saved = append(saved, got)
	}
	rec := &Record{
		Ref: ref, Outcome: dec.Outcome, Disposition: string(dec.Disposition), Reason: dec.Reason,
		Mailbox: m.Mailbox, UIDValidity: m.UIDValidity, UID: m.UID,
		MessageID: dec.MessageID, From: dec.From, Subject: dec.Subject, Size: m.Size,
		Stored: stored, Requests: ids, At: p.o.Now().UTC(),
	}
	out := dec.Reply
	if dec.BuildReply != nil {
		var err error
		if out, err = buildReply(dec.BuildReply, saved); err != nil {
			p.log.Error("reply not built: none sent", "uid", m.UID, "message_id", dec.MessageID, "err", err)
			rec.Reason = strings.TrimSpace(rec.Reason + " No reply was sent: " + keydesk.SafeLine(err.Error(), 300))
			out = nil
		}
	}
	if out != nil {
		if err := p.o.Queue.Enqueue(sctx, out); err != nil {
			return nil, tmp("enqueue reply", err)
		}
		rec.Reply = out.ID
	}
	if dec.Converse != nil {
		mailRef := ""
		if stored {
			mailRef = ref
		}
		more, err := dec.Converse(sctx, saved, mailRef)
		if err != nil {
			return nil, tmp("conversation", err)
		}
		for _, o := range more {
			if err := p.o.Queue.Enqueue(sctx, o); err != nil {
				return nil, tmp("enqueue reply", err)
			}
			rec.Conversation = append(rec.Conversation, o.ID)
		}
	}
	if err := saveRecord(sctx, p.records, rec); err != nil {
		return nil, tmp("intake record", err)
	}
	return ids, nil
}

// keptCopy is what is stored of a raw email of size bytes: all of it, or,
// past keep bytes, its start and a line that says it was cut. The parser
// read the whole email and names in a warning what the copy lacks.
func keptCopy(r io.Reader, size, keep int64) io.Reader {
	if size <= keep {
		return r
	}
	mark := fmt.Sprintf("\r\n\r\n[keydesk: this copy of the email is cut at %d of its %d bytes (imap.max_message_bytes); the rest was not kept]\r\n", keep, size)
	return io.MultiReader(io.LimitReader(r, keep-int64(len(mark))), strings.NewReader(mark))
}

// buildReply runs a reply builder, turning a panic into an error.
func buildReply(f func([]*keydesk.Request) (*keydesk.Outgoing, error), stored []*keydesk.Request) (out *keydesk.Outgoing, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, &PanicError{Value: v}
		}
	}()
	return f(stored)
}

// storeError is a failure to store in the queue: temporary, and likely to
// hit every email until the queue is back.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// oversize records an email larger than hard_max_message_bytes from its
// header alone and says where it goes; its body is never downloaded.
func (s *conn) oversize(ctx context.Context, uid imap.UID, si sizeInfo) (string, error) {
	p := s.p
	hdr, err := s.fetchHeader(ctx, uid)
	if err != nil {
		return "", err
	}
	m := &Message{Mailbox: p.o.IMAP.Mailbox, UIDValidity: s.uidVal, UID: uint32(uid), Size: si.size, InternalDate: si.date}
	dec := tooLargeDecision(hdr, m, p.o.IMAP.HardMaxMessageBytes)
	if _, err := p.store(ctx, m, dec, false, ""); err != nil {
		return "", err
	}
	p.emails.Inc(dec.Outcome)
	p.log.Warn("email too large: set aside unread", "uid", uid, "size", si.size, "limit", p.o.IMAP.HardMaxMessageBytes, "message_id", dec.MessageID)
	return s.moveTo(dec.Disposition), nil
}

// refused records an email the server would not send (a damaged message
// file, a server bug) and says where it goes: set aside, so that it does
// not block the emails after it.
func (s *conn) refused(ctx context.Context, uid imap.UID, si sizeInfo, cause error, header bool) (string, error) {
	p := s.p
	var hdr []byte
	if header {
		var err error
		if hdr, err = s.fetchHeader(ctx, uid); err != nil {
			return "", err
		}
	}
	m := &Message{Mailbox: p.o.IMAP.Mailbox, UIDValidity: s.uidVal, UID: uint32(uid), Size: si.size, InternalDate: si.date}
	reason := "The mail server would not send this email (" + keydesk.SafeLine(cause.Error(), 300) + "); it was set aside unread. Look at it in the rejected mailbox, or on the server."
	dec := setAside(hdr, m, "malformed", keydesk.ReasonMalformed, reason)
	if _, err := p.store(ctx, m, dec, false, ""); err != nil {
		return "", err
	}
	p.emails.Inc(dec.Outcome)
	p.log.Warn("server refused to send an email: set aside", "uid", uid, "err", cause, "message_id", dec.MessageID)
	return s.moveTo(dec.Disposition), nil
}

// poison sets aside, unparsed, an email that was in hand tries times when
// the process ended (a crash no recover catches, an out-of-memory kill):
// fetched again, it would end the process again, forever. Support is
// alerted. Its header is read for the record unless reading it was one of
// those tries too, and its body is never downloaded.
func (s *conn) poison(ctx context.Context, uid imap.UID, si sizeInfo, tries int) (string, error) {
	p := s.p
	m := &Message{Mailbox: p.o.IMAP.Mailbox, UIDValidity: s.uidVal, UID: uint32(uid), Size: si.size, InternalDate: si.date}
	if old, err := GetRecord(ctx, p.o.Queue, queue.MailRef(locationKey(m))); err == nil && old.Outcome == "poison" {
		// Set aside before, and the process ended before the move: the
		// record is written last, so everything is stored already.
		p.log.Warn("email set aside before and not moved: moving it", "uid", uid, "attempts", tries)
		return s.moveTo(Rejected), nil
	}
	var hdr []byte
	if tries == p.o.IMAP.MaxAttempts {
		var err error
		if hdr, err = s.fetchHeader(ctx, uid); err != nil {
			return "", err
		}
	}
	reason := fmt.Sprintf("Set aside after %d attempts that did not finish: the email may crash keydesk; open it with care. "+
		"keydesk did not read it again; look at its source in the rejected mailbox and enter the request by hand if it is one.", tries)
	dec := setAside(hdr, m, "poison", keydesk.ReasonPoison, reason)
	// Named by where it is and dated by the server, not by its header:
	// with or without its header it is the same request, and the parser's
	// own request for the email (once keydesk reads it, moved back to the
	// inbox) is not taken for this one.
	dec.SourceKey = locationKey(m)
	for _, r := range dec.Requests {
		r.SourceKey = dec.SourceKey
		if !m.InternalDate.IsZero() {
			r.SourceDate = m.InternalDate.UTC()
		}
	}
	log := p.log.With("uid", uid, "attempts", tries, "message_id", dec.MessageID)
	if p.o.Templates == nil || p.o.SupportAddress == "" {
		log.Warn("no alert sent about the email set aside: smtp.support_address or the templates are not set")
	} else {
		dec.BuildReply = func(stored []*keydesk.Request) (*keydesk.Outgoing, error) {
			return p.o.Templates.AlertMail(poisonAlertID(m), p.o.SupportAddress, poisonAlert(m, dec, stored, tries, p.o.IMAP.RejectedMailbox))
		}
	}
	if _, err := p.store(ctx, m, dec, false, ""); err != nil {
		return "", err
	}
	p.emails.Inc(dec.Outcome)
	log.Error("email set aside: keydesk ended while processing it each of the last attempts", "from", dec.From, "subject", dec.Subject)
	return s.moveTo(dec.Disposition), nil
}

// poisonAlertID names the alert about one email: the same email (mailbox,
// UIDVALIDITY, UID) set aside again after a crash is not alerted twice.
func poisonAlertID(m *Message) string {
	return fmt.Sprintf("intake.poison.%s.%d.%d", queue.KeyToken(m.Mailbox), m.UIDValidity, m.UID)
}

func poisonAlert(m *Message, dec *Decision, stored []*keydesk.Request, tries int, rejected string) templates.Alert {
	var ids []string
	for _, r := range stored {
		ids = append(ids, r.ID)
	}
	none := func(v string) string {
		if v == "" {
			return "(not read)"
		}
		return v
	}
	return templates.Alert{
		Title: "Email set aside: it may crash keydesk",
		Text: fmt.Sprintf("An email was moved to the %s mailbox without being read: keydesk was processing it each of the last %d times its process ended "+
			"(a crash, or a kill for using too much memory), so reading it again would likely end it again. It is recorded as request %s, rejected with reason poison.\n\n"+
			"  From:       %s\n  Subject:    %s\n  Message-ID: %s\n  Mailbox:    %s, UID %d (UIDVALIDITY %d), %s",
			rejected, tries, none(strings.Join(ids, ", ")), none(dec.From), none(dec.Subject), none(dec.MessageID), m.Mailbox, m.UID, m.UIDValidity, humanBytes(m.Size)),
		Action: "open the email with care: look at its source rather than letting a mail program display it. If it is a key request, enter it by hand. " +
			"Keep a copy for the developers: keydesk should read such an email without ending.",
	}
}

// fetchHeader reads at most maxHeaderPeek bytes of a message's header. A
// server that answers NO yields no header and no error: the caller records
// what is known. Any other error means the connection is gone.
func (s *conn) fetchHeader(ctx context.Context, uid imap.UID) ([]byte, error) {
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: maxHeaderPeek}}
	var hdr []byte
	err := s.do(ctx, s.p.o.IMAP.Timeout, "fetch header", func() error {
		msgs, err := s.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		for _, m := range msgs {
			for _, b := range m.BodySection {
				hdr = b.Bytes
			}
		}
		return err
	})
	var ie *imap.Error
	if errors.As(err, &ie) {
		return nil, nil
	}
	return hdr, err
}

// head is what the poller itself reads of a header, for emails the Handler
// cannot describe.
type head struct {
	from, messageID, subject string
	date                     time.Time
}

// readHead reads the header of a spool file, bounded.
func readHead(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHeaderPeek))
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[:i+2]
	} else if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		b = b[:i+1]
	}
	return b, err
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// parseHead reads what it can of raw header bytes; a broken header yields
// empty fields, never an error.
func parseHead(raw []byte) head {
	var h head
	msg, err := mail.ReadMessage(bufio.NewReader(io.MultiReader(bytes.NewReader(raw), strings.NewReader("\r\n\r\n"))))
	if err != nil {
		return h
	}
	if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
		h.from = a.Address
	} else {
		h.from = keydesk.SafeLine(msg.Header.Get("From"), 200)
	}
	h.messageID = strings.Trim(strings.TrimSpace(msg.Header.Get("Message-ID")), "<>")
	h.messageID = keydesk.SafeLine(h.messageID, 500)
	subj := msg.Header.Get("Subject")
	if d, err := wordDecoder.DecodeHeader(subj); err == nil {
		subj = d
	}
	h.subject = keydesk.SafeLine(subj, 200)
	if t, err := parse.Date(msg.Header.Get("Date")); err == nil {
		h.date = t
	}
	return h
}

// setAside builds the decision for an email the poller sets aside itself:
// a rejected request, so that the review queue shows it with its reason.
func setAside(raw []byte, m *Message, outcome string, code keydesk.ReasonCode, reason string) *Decision {
	// A header read from the server (an email not downloaded) has not
	// been through redactSpool: a secret in its subject is kept out too.
	raw, _ = redact.Redact(raw, redact.Limits{})
	h := parseHead(raw)
	key := keydesk.SourceKey(h.from, h.messageID, raw)
	switch {
	case h.messageID != "":
	case m.Digest != "":
		key = strings.ToLower(h.from) + "\x00sha256:" + m.Digest
	case len(raw) == 0:
		// Nothing of the email could be read: name it by where it is.
		key = locationKey(m)
	}
	date := h.date
	if date.IsZero() || date.After(time.Now().Add(48*time.Hour)) || date.Year() < 2000 {
		date = m.InternalDate
	}
	if date.IsZero() {
		date = time.Now()
	}
	req := &keydesk.Request{
		State: keydesk.StateRejected, Requester: h.from, SourceMessageID: h.messageID,
		SourceDate: date.UTC(), SourceKey: key, Subject: h.subject,
		Reasons: []keydesk.Reason{{Code: code, Message: reason}},
		Problem: reason,
	}
	req.AddFlag(keydesk.FlagNeedsReview)
	return &Decision{
		Outcome: outcome, Disposition: Rejected, SourceKey: key,
		MessageID: h.messageID, From: h.from, Subject: h.subject,
		Requests: []*keydesk.Request{req}, Reason: reason,
	}
}

// locationKey is the source key of an email named by where it is.
func locationKey(m *Message) string {
	return fmt.Sprintf("\x00imap:%s/%d/%d", m.Mailbox, m.UIDValidity, m.UID)
}

func tooLargeDecision(raw []byte, m *Message, limit int64) *Decision {
	reason := fmt.Sprintf("The email is %s, larger than the %s keydesk accepts; it was set aside unread. Ask the sender to send the request without attachments.",
		humanBytes(m.Size), humanBytes(limit))
	return setAside(raw, m, "too-large", keydesk.ReasonTooLarge, reason)
}

func unreadableDecision(raw []byte, m *Message, cause error) *Decision {
	reason := "keydesk could not read this email (" + keydesk.SafeLine(cause.Error(), 300) + "); it was set aside. Read it in the rejected mailbox and enter the request by hand if it is one."
	return setAside(raw, m, "malformed", keydesk.ReasonMalformed, reason)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
