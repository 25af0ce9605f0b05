package queue

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// MailRef names a source email in the mail object store: a digest of its
// source key, so the same email is stored once.
func MailRef(sourceKey string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(sourceKey)))
}

// ErrMailTooLarge: the email is larger than the store keeps.
var ErrMailTooLarge = errors.New("queue: mail is larger than the limit")

// PutMail stores a raw email under ref, reading at most max bytes; a larger
// email is refused with ErrMailTooLarge. It streams: the email is never held
// whole in memory.
func (c *Conn) PutMail(ctx context.Context, ref string, r io.Reader, max int64) error {
	lr := &limitReader{r: r, n: max}
	_, err := c.mail.Put(ctx, jetstream.ObjectMeta{Name: ref}, lr)
	if lr.over {
		_ = c.mail.Delete(context.WithoutCancel(ctx), ref)
		return ErrMailTooLarge
	}
	if err != nil {
		return fmt.Errorf("queue: store mail %s: %w", ref, err)
	}
	return nil
}

// OpenMail returns a reader of a stored email; the caller closes it.
func (c *Conn) OpenMail(ctx context.Context, ref string) (io.ReadCloser, error) {
	r, err := c.mail.Get(ctx, ref)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("queue: mail %s: not stored", ref)
		}
		return nil, fmt.Errorf("queue: mail %s: %w", ref, err)
	}
	return r, nil
}

type limitReader struct {
	r    io.Reader
	n    int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		l.over = true
		return 0, ErrMailTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		l.over = true
		return n, ErrMailTooLarge
	}
	return n, err
}
