package mailauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/buildmarkets/keydesk"
)

// TokenSource supplies OAuth2 access tokens for oauthbearer and xoauth2.
type TokenSource interface {
	// Token returns the current access token.
	Token(ctx context.Context) (keydesk.Secret, error)
	// Invalidate drops the cached token: the server refused it, and the
	// next Token reads the file or runs the command again.
	Invalidate()
}

// maxTokenBytes bounds what a token file or command may return.
const maxTokenBytes = 64 << 10

// TokenOptions configure NewTokenSource.
type TokenOptions struct {
	// File is read for the token (oauth2_token_file); another process
	// (a sidecar, a timer) keeps it fresh.
	File string
	// Command is run by /bin/sh -c for the token on its standard output
	// (oauth2_token_command).
	Command string
	// MaxAge is how long a token is used before it is read again even
	// without a refusal. Default 5m: access tokens last about an hour.
	MaxAge time.Duration
	// CommandTimeout bounds the command. Default 30s.
	CommandTimeout time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// NewTokenSource returns the token source of ms (oauth2_token_file or
// oauth2_token_command), or nil when ms has neither.
func NewTokenSource(ms MailServer) TokenSource {
	if ms.OAuth2TokenFile == "" && ms.OAuth2TokenCommand == "" {
		return nil
	}
	return NewTokens(TokenOptions{File: ms.OAuth2TokenFile, Command: ms.OAuth2TokenCommand})
}

// Tokens is the TokenSource reading a file or running a command, caching
// the token until it is refused or MaxAge passes.
type Tokens struct {
	o TokenOptions

	mu    sync.Mutex
	tok   keydesk.Secret
	at    time.Time
	valid bool
}

var _ TokenSource = (*Tokens)(nil)

// NewTokens returns a token source; File wins over Command when both are set.
func NewTokens(o TokenOptions) *Tokens {
	if o.MaxAge == 0 {
		o.MaxAge = 5 * time.Minute
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Tokens{o: o}
}

// Token returns the cached token or reads a new one.
func (t *Tokens) Token(ctx context.Context) (keydesk.Secret, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.o.Now()
	if t.valid && now.Sub(t.at) < t.o.MaxAge {
		return t.tok, nil
	}
	tok, err := t.read(ctx)
	if err != nil {
		return keydesk.Secret{}, err
	}
	t.tok, t.at, t.valid = tok, now, true
	return tok, nil
}

// Invalidate drops the cached token.
func (t *Tokens) Invalidate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.valid = false
}

func (t *Tokens) read(ctx context.Context) (keydesk.Secret, error) {
	var raw []byte
	switch {
	case t.o.File != "":
		f, err := os.Open(t.o.File)
		if err != nil {
			return keydesk.Secret{}, fmt.Errorf("mailauth: oauth2_token_file: %w", err)
		}
		raw, err = io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
		_ = f.Close()
		if err != nil {
			return keydesk.Secret{}, fmt.Errorf("mailauth: oauth2_token_file %s: %w", t.o.File, err)
		}
		if len(raw) > maxTokenBytes {
			return keydesk.Secret{}, fmt.Errorf("mailauth: oauth2_token_file %s is over %d bytes: it should hold one access token", t.o.File, maxTokenBytes)
		}
	case t.o.Command != "":
		cctx, cancel := context.WithTimeout(ctx, t.o.CommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(cctx, "/bin/sh", "-c", t.o.Command)
		// The shell's children are killed with it, and output pipes a
		// stray grandchild holds open do not keep Run waiting.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		var stdout limitedBuffer
		var stderr limitedBuffer
		stdout.max, stderr.max = maxTokenBytes, 512
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			clear(stdout.b.Bytes())
			msg := strings.TrimSpace(stderr.b.String())
			if cctx.Err() != nil && ctx.Err() == nil {
				return keydesk.Secret{}, fmt.Errorf("mailauth: oauth2_token_command did not finish within %s", t.o.CommandTimeout)
			}
			// stderr is shown to help the operator; a token command
			// prints its token on stdout only.
			return keydesk.Secret{}, fmt.Errorf("mailauth: oauth2_token_command failed: %v: %s", err, msg)
		}
		if stdout.over {
			clear(stdout.b.Bytes())
			return keydesk.Secret{}, fmt.Errorf("mailauth: oauth2_token_command printed over %d bytes: it should print one access token", maxTokenBytes)
		}
		raw = stdout.b.Bytes()
	default:
		return keydesk.Secret{}, errors.New("mailauth: no oauth2_token_file or oauth2_token_command configured")
	}
	tok := bytes.TrimSpace(raw)
	if len(tok) == 0 {
		return keydesk.Secret{}, errors.New("mailauth: the oauth2 token is empty")
	}
	if bytes.ContainsAny(tok, "\x00\x01\r\n ") {
		clear(raw)
		return keydesk.Secret{}, errors.New("mailauth: the oauth2 token holds a space, line break or control character: it should be one access token")
	}
	out := keydesk.NewSecret(append([]byte(nil), tok...))
	clear(raw)
	return out, nil
}

// limitedBuffer keeps at most max bytes and notes that there was more.
type limitedBuffer struct {
	b    bytes.Buffer
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room < len(p) {
		l.over = true
		if room > 0 {
			l.b.Write(p[:room])
		}
		return len(p), nil
	}
	return l.b.Write(p)
}
