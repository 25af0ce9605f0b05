package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/review"
	"github.com/buildmarkets/keydesk/review/users"
	"github.com/buildmarkets/keydesk/templates"
)

// startReview serves the support team's UI and JSON API on review.listen
// (the app's mux, beside /healthz and /metrics).
func startReview(ctx context.Context, a *app) (func(context.Context) error, error) {
	cfg := a.cfg
	tpl, err := templates.Load(cfg.Path(cfg.Templates.Dir))
	if err != nil {
		return nil, err
	}
	usersPath := cfg.Path(cfg.Review.UsersFile)
	src, err := users.NewSource(usersPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("review: review.users_file %s does not exist: create it with 'keydesk users add NAME --role admin'", usersPath)
		}
		return nil, fmt.Errorf("review: %w", err)
	}
	log := a.log.With("role", "review")
	src.OnError = func(err error) {
		log.Error("users file changed but has problems: keeping the users in force", "file", usersPath, "err", err)
	}
	sso := cfg.Review.OIDC.Enabled()
	if src.Current().Len() == 0 && !sso {
		log.Warn("users file lists nobody: no one can sign in", "file", usersPath)
	}
	tlsOn := cfg.Review.TLSCert != ""
	host, _, _ := net.SplitHostPort(cfg.Review.Listen)
	// Browsers refuse a Secure cookie over plain HTTP, except that the
	// cookie is fine behind a TLS-terminating proxy. So the Secure
	// attribute is dropped only for plain HTTP on loopback (a developer's
	// machine, or a proxy on the same host that the docs describe).
	insecure := !tlsOn && mailauth.IsLoopback(host)
	if !tlsOn && !insecure {
		log.Warn("review serves plain HTTP on a non-loopback address: put it behind a TLS proxy or set review.tls_cert and review.tls_key", "listen", cfg.Review.Listen)
	}
	nt, err := newNotifier(a, tpl)
	if err != nil {
		return nil, err
	}
	schedule := cfg.Batch.Schedule
	srv, err := review.New(review.Options{
		Queue: a.q, Users: src.Current, Partners: a.partners.Current, Templates: tpl,
		FourEyes: cfg.Review.FourEyes, SessionIdle: cfg.Review.SessionIdle, AgeTarget: cfg.Review.AgeTarget,
		InsecureCookie: insecure, TLS: tlsOn,
		NextRun: func(now time.Time) time.Time {
			t, err := batch.NextRun(schedule, now)
			if err != nil {
				return time.Time{}
			}
			return t
		},
		Location:       scheduleLocation(schedule),
		SupportAddress: cfg.SMTP.SupportAddress,
		Metrics:        a.metrics, Logger: log,
		Mail:           mailLog(a),
		RotationMaxAge: cfg.Rotation.MaxAge, RotationRemindBefore: cfg.Rotation.RemindBefore,
		OIDC: oidcOptions(cfg.Review.OIDC), PasswordLoginOff: !cfg.Review.PasswordLogin(),
	})
	if err != nil {
		return nil, err
	}
	h := srv.Handler()
	a.web.Store(&h)
	a.addCheck("review-users", func(context.Context) error {
		if src.Current().Len() == 0 && !sso {
			return fmt.Errorf("%s lists nobody: no one can sign in", usersPath)
		}
		return nil
	})
	log.Info("review UI and API ready", "listen", cfg.Review.Listen, "tls", tlsOn, "users", src.Current().Len(), "sso", cfg.Review.OIDC.Issuer)
	if nt.Enabled() {
		return runTogether(srv.Run, nt.Run), nil
	}
	return srv.Run, nil
}

// oidcOptions is review.oidc as the review package takes it; nil
// without single sign-on.
func oidcOptions(o config.OIDC) *review.OIDCOptions {
	if !o.Enabled() {
		return nil
	}
	return &review.OIDCOptions{
		Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURL: o.RedirectURL,
		Scopes: o.Scopes, RolesClaim: o.RolesClaim, ReauthAfter: o.ReauthAfter, DisplayName: o.DisplayName,
		Roles: map[users.Role][]string{users.Viewer: o.Roles.Viewer, users.Approver: o.Roles.Approver, users.Admin: o.Roles.Admin},
	}
}

// mailLog reads intake's records of the emails it took out of the inbox
// (the intake bucket) for the review mail log.
func mailLog(a *app) func(ctx context.Context) ([]review.MailEntry, error) {
	moved := map[string]string{
		string(intake.Processed): a.cfg.IMAP.ProcessedMailbox,
		string(intake.Rejected):  a.cfg.IMAP.RejectedMailbox,
	}
	return func(ctx context.Context) ([]review.MailEntry, error) {
		recs, err := intake.Records(ctx, a.q)
		if err != nil {
			return nil, err
		}
		out := make([]review.MailEntry, 0, len(recs))
		for _, r := range recs {
			to := moved[r.Disposition]
			if to == "" {
				to = r.Disposition
			}
			out = append(out, review.MailEntry{
				Ref: r.Ref, At: r.At, From: r.From, Subject: r.Subject, MessageID: r.MessageID,
				Outcome: r.Outcome, Reason: r.Reason, MovedTo: to, UID: r.UID, Size: r.Size, Requests: r.Requests,
			})
		}
		return out, nil
	}
}

// scheduleLocation is the time zone of a cron schedule's CRON_TZ= (or
// TZ=) prefix, UTC without one.
func scheduleLocation(schedule string) *time.Location {
	f := strings.Fields(schedule)
	if len(f) > 0 {
		for _, p := range []string{"CRON_TZ=", "TZ="} {
			if name, ok := strings.CutPrefix(f[0], p); ok {
				if loc, err := time.LoadLocation(name); err == nil {
					return loc
				}
			}
		}
	}
	return time.UTC
}

// checkUsersFile validates users.yaml for 'keydesk check' when it exists.
func checkUsersFile(cfg *config.Config) error {
	p := cfg.Path(cfg.Review.UsersFile)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil // only the review role needs it; it says so when it starts
	}
	set, err := users.Load(p)
	if err != nil {
		return err
	}
	if set.Len() == 0 && !cfg.Review.OIDC.Enabled() {
		return fmt.Errorf("%s: lists nobody: add someone with 'keydesk users add NAME --role admin'", p)
	}
	// The example users' credentials are published: a users.yaml that
	// still holds them lets anyone in.
	var warns []error
	for i, u := range set.All() {
		var keys []string
		if _, ok := config.ExampleText(u.PasswordHash); ok {
			keys = append(keys, "password_hash")
		}
		if _, ok := config.ExampleDigest(u.TokenSHA256); ok {
			keys = append(keys, "token_sha256")
		}
		if len(keys) > 0 {
			warns = append(warns, config.Warnf("%s: users[%d]: %s has the %s of the example users published with keydesk: anyone can sign in as %s; remove the user or give new credentials ('keydesk users add')",
				filepath.Base(p), i, u.Name, strings.Join(keys, " and "), u.Name))
		}
	}
	return errors.Join(warns...)
}
