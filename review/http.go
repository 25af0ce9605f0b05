package review

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/buildmarkets/keydesk"
)

// routes wires the UI, the API and the static files behind the security
// middleware: headers first, then the cross-origin check.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/queue", http.StatusSeeOther) })
	mux.HandleFunc("GET /login", s.getLogin)
	mux.HandleFunc("POST /login", s.postLogin)
	mux.HandleFunc("GET /login/oidc", s.getOIDCLogin)
	mux.HandleFunc("GET /login/oidc/callback", s.getOIDCCallback)
	mux.HandleFunc("POST /logout", s.web(s.postLogout))
	mux.HandleFunc("GET /queue", s.web(s.getQueue))
	mux.HandleFunc("GET /requests/{id}", s.web(s.getRequest))
	mux.HandleFunc("POST /requests/{id}/{action}", s.web(s.postRequest))
	mux.HandleFunc("POST /requests/{id}/proposal/{decision}", s.web(s.postRequest))
	mux.HandleFunc("GET /batches", s.web(s.getBatches))
	mux.HandleFunc("POST /batches", s.web(s.postBatches))
	mux.HandleFunc("GET /audit", s.web(s.getAudit))
	mux.HandleFunc("GET /audit/export", s.web(s.getAuditExport))
	mux.HandleFunc("GET /mail", s.web(s.getMail))
	mux.HandleFunc("GET /partners", s.web(s.getPartners))
	mux.HandleFunc("GET /partners/{partner}", s.web(s.getPartner))
	mux.HandleFunc("POST /keys/{action}", s.web(s.postKeys))
	mux.HandleFunc("POST /requests/{id}/rotation/confirm", s.web(s.postConfirmRotation))
	mux.HandleFunc("GET /static/{file}", s.getStatic)

	mux.HandleFunc("GET /api/v1/requests", s.api(s.apiListRequests))
	mux.HandleFunc("GET /api/v1/requests/{id}", s.api(s.apiGetRequest))
	mux.HandleFunc("POST /api/v1/requests/{id}/{action}", s.api(s.apiAction))
	mux.HandleFunc("POST /api/v1/requests/{id}/proposal/{decision}", s.api(s.apiAction))
	mux.HandleFunc("GET /api/v1/batches", s.api(s.apiListBatches))
	mux.HandleFunc("POST /api/v1/batches", s.api(s.apiRunBatch))
	mux.HandleFunc("GET /api/v1/mail", s.api(s.apiListMail))
	mux.HandleFunc("GET /api/v1/keys", s.api(s.apiListKeys))
	mux.HandleFunc("POST /api/v1/keys/revoke", s.api(s.apiAskKey(keydesk.KindRevoke)))
	mux.HandleFunc("POST /api/v1/keys/rotate", s.api(s.apiAskKey(keydesk.KindRotate)))
	mux.HandleFunc("POST /api/v1/keys/refresh", s.api(s.apiRefreshKeys))
	mux.HandleFunc("POST /api/v1/requests/{id}/rotation/confirm", s.api(s.apiConfirmRotation))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no such API endpoint: see docs/review.md"})
	})

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("review: cross-origin request refused", "method", r.Method, "path", r.URL.Path, "origin", clip(r.Header.Get("Origin"), 100), "ip", clientIP(r))
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeJSONError(w, &Error{Status: http.StatusForbidden, Code: "cross_origin", Msg: "cross-origin request refused"})
			return
		}
		s.renderError(w, r, nil, &Error{Status: http.StatusForbidden, Code: "cross_origin", Msg: "This form was sent from another site and was refused. Open keydesk directly and try again."})
	}))
	return s.headers(s.deadline(cop.Handler(mux)))
}

// deadline gives every request Options.RequestTimeout to wait for the
// store, so that a cluster without a leader means a 503 with Retry-After,
// never a hang; except the audit export, which streams for as long as the
// trail is.
func (s *Server) deadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/audit/export" {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.o.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// headers sets the security headers of every response.
func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if s.o.TLS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		// Bound what a client may send: forms and API bodies are small.
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

// web wraps a UI handler: it needs a session (or redirects to the login
// page) and, for POST, a valid CSRF token.
func (s *Server) web(h func(w http.ResponseWriter, r *http.Request, st *staff) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, err := s.sessionStaff(r)
		if errors.Is(err, errSSOEnded) {
			// The provider says how long a sign-in lasts: a page load goes
			// back through it (without a word from the person while their
			// session there lasts); a form is not replayed.
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login/oidc?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
				return
			}
			s.renderError(w, r, nil, &Error{Status: http.StatusUnauthorized, Code: "sign_in_expired", Msg: "Your sign-in has expired, so nothing was changed. Sign in again and repeat the action."})
			return
		}
		if err != nil {
			s.renderError(w, r, nil, asError("", err))
			return
		}
		if st == nil {
			if r.Method != http.MethodGet {
				s.renderError(w, r, nil, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Msg: "Your session has ended. Sign in again; nothing was changed."})
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !checkCSRF(r, st) {
			s.renderError(w, r, st, &Error{Status: http.StatusForbidden, Code: "csrf", Msg: "This form is stale or was not sent from keydesk (CSRF token missing or wrong). Reload the page and try again; nothing was changed."})
			return
		}
		if err := h(w, r, st); err != nil {
			s.renderError(w, r, st, asError(r.PathValue("id"), err))
		}
	}
}

// safeNext keeps a post-login redirect on this site: a path, never a URL.
// Browsers drop tabs and line breaks from a Location and read a backslash
// as a slash, so "/\t/host" and "/\\host" would leave the site: a next
// with any control character, or that parses with a scheme or a host, or
// that starts "//" or "/\\", becomes /queue.
func safeNext(p string) string {
	const home = "/queue"
	if len(p) > 512 || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return home
	}
	for _, r := range p {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return home
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return home
	}
	return p
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, st *staff, e *Error) {
	if e.Err != nil || e.Status >= 500 {
		s.log.Error("review: request failed", "path", r.URL.Path, "status", e.Status, "err", e.Err)
	}
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
	s.render(w, e.Status, "error", pageData{Title: http.StatusText(e.Status), Staff: st, Error: e.Msg})
}

// getStatic serves the embedded CSS (and whatever else web/static holds).
func (s *Server) getStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if strings.Contains(name, "..") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(s.o.Templates.FS(), "web/static/"+name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		http.Error(w, "cannot read file", http.StatusInternalServerError)
		return
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".svg"):
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(b)
}
