package review

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

// livePair is a key made by the Buildmarkets API simulator, with its
// secret: what a partner pastes.
type livePair struct {
	env               keydesk.Environment
	id, label, apiKey string
	secret            string
}

// mintKeys makes keys in the simulator of each environment, as the
// batch role would, and records the partner's inventory as the batch
// role does after listing them.
func mintKeys(t *testing.T, q *queue.Conn, labels map[keydesk.Environment][]string) []livePair {
	t.Helper()
	ctx := context.Background()
	seed, err := fake.ParseSeed([]byte(`{"accounts":[{"id":"acme","manager_keys":[{"api_key":"bm_key_acme_mgr","api_secret":"bm_secret_acme_mgr_s3cr3t","scopes":["keys:manage"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var pairs []livePair
	for _, env := range []keydesk.Environment{keydesk.Sandbox, keydesk.Production} {
		srv, err := fake.New(fake.Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv)
		t.Cleanup(ts.Close)
		c := bmapi.New(bmapi.Options{BaseURL: ts.URL, APIKey: "bm_key_acme_mgr", APISecret: keydesk.SecretString("bm_secret_acme_mgr_s3cr3t")})
		for _, l := range labels[env] {
			k, err := c.CreateKey(ctx, l, []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingWrite})
			if err != nil {
				t.Fatal(err)
			}
			pairs = append(pairs, livePair{env: env, id: k.ID, label: k.Label, apiKey: k.APIKey, secret: k.APISecret.Reveal()})
		}
		listed, err := c.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = q.UpdateInventory(ctx, "acme", env, func(inv *keydesk.Inventory) error {
			inv.Keys = nil
			for _, k := range listed {
				inv.Keys = append(inv.Keys, keydesk.InventoryKey{KeyRef: keydesk.KeyRef{Partner: "acme", Environment: env, ID: k.ID},
					Label: k.Label, Scopes: k.Scopes, APIKey: k.APIKey, CreatedAt: k.CreatedAt, FirstSeen: k.CreatedAt, MadeBy: keydesk.MadeByKeydesk})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return pairs
}

func partnerEmail(id, subject, extra, contentType, body string) []byte {
	return []byte("Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n" +
		"From: Ada Lovelace <ada@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: " + subject + "\r\n" +
		"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMessage-ID: <" + id + ">\r\n" + extra +
		"MIME-Version: 1.0\r\nContent-Type: " + contentType + "\r\n\r\n" + body)
}

// TestExposedSecretEndToEnd: a partner pastes live key pairs into
// emails, five ways (plain text, HTML, quoted in a reply, an attached
// .env, a forwarded message), to a real Dovecot. Afterwards no byte of
// any secret is anywhere keydesk writes or shows: every stream and
// bucket of the store (requests, threads, audit, outbox, raw mail),
// intake's and review's logs, the metrics, every API answer and page,
// and what headless Chromium shows. A revoke request for each exact key
// waits for a person; the requester got one email per email, without
// the secret; "Revoke and issue a replacement" approves the revocation
// and asks for the new key.
func TestExposedSecretEndToEnd(t *testing.T) {
	testenv.Short(t)
	ctx := context.Background()
	q := queuetest.Open(t)
	e := newEnvOn(t, q, nil)
	e.reg.Partners[0].Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{
		keydesk.Sandbox: {APIKey: "k"}, keydesk.Production: {APIKey: "k"}}
	pairs := mintKeys(t, q, map[keydesk.Environment][]string{
		keydesk.Sandbox:    {"sandbox-backend"},
		keydesk.Production: {"prod-trading-engine", "prod-reporting", "prod-backoffice", "prod-quotes"},
	})

	d := dovecottest.Start(t)
	tpl := templates.MustLoadEmbedded()
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := metrics.New()
	next := time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC)
	handler := intake.NewParseHandler(intake.ParseOptions{
		Registry: func() *keydesk.Registry { return e.reg },
		Parse: parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true,
			InternalDomains: []string{"buildmarkets.ai"}, Now: e.clock.Now},
		Reply:     func(res *parse.Result) (*keydesk.Outgoing, error) { return reply.Build(res, tpl, next) },
		Threads:   q,
		Templates: tpl, SupportAddress: "support@buildmarkets.ai", Now: e.clock.Now, Log: log,
	})
	p, err := intake.New(intake.Options{
		IMAP: intake.Mailbox{
			MailServer: mailauth.MailServer{Address: d.Addr, Security: mailauth.SecurityNone, Username: d.User,
				Password: keydesk.SecretString(d.Password), Timeout: 10 * time.Second},
			Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
			PollInterval: 5 * time.Second, MaxMessageBytes: 1 << 20,
		},
		Queue: q, Handler: handler, SpoolDir: filepath.Join(t.TempDir(), "spool"), Templates: tpl,
		SupportAddress: "support@buildmarkets.ai", Metrics: reg, Log: log, Now: e.clock.Now, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-done
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log())
		}
	})
	deliver := func(raw []byte) {
		t.Helper()
		if err := d.Deliver("INBOX", raw); err != nil {
			t.Fatal(err)
		}
	}
	taken := func(n int) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%d emails taken in", n), func() bool {
			recs, err := intake.Records(ctx, q)
			return err == nil && len(recs) == n
		})
	}

	// A request first, so that the partner can answer its acknowledgement.
	deliver(partnerEmail("req1@acme.example", "New sandbox key", "", "text/plain; charset=utf-8",
		"Hello,\r\n\r\nEnvironment: sandbox\r\nScopes: accounts:read\r\nLabel: sandbox-reports\r\n\r\nThanks, Ada\r\n"))
	taken(1)
	reqs, err := q.List(ctx, queue.Filter{})
	if err != nil || len(reqs) != 1 {
		t.Fatalf("requests %v %v", reqs, err)
	}
	first := reqs[0]
	if err := q.IndexMessage(ctx, first.ID+".ack@buildmarkets.ai", first.ID); err != nil {
		t.Fatal(err)
	}

	sb, prod := pairs[0], pairs[1:]
	pairText := func(k livePair) string { return "X-API-Key: " + k.apiKey + "\r\nX-API-Secret: " + k.secret + "\r\n" }
	emails := []struct {
		name, id string
		raw      []byte
		pair     livePair
	}{
		{"plain text", "plain@acme.example", partnerEmail("plain@acme.example", "401 with this pair, can you check?", "", "text/plain; charset=utf-8",
			"Hi,\r\n\r\nwe get 401 with this pair, can you check?\r\n\r\n"+pairText(prod[0])+"\r\nThanks, Ada\r\n"), prod[0]},
		{"html", "html@acme.example", partnerEmail("html@acme.example", "Still 401", "", "multipart/alternative; boundary=\"alt\"",
			"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nStill 401 with:\r\n"+pairText(prod[1])+
				"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+
				testenv.QuotedPrintable("<html><body><p>Still 401 with:</p><div>X-API-Key: "+prod[1].apiKey+"</div><div>X-API-Secret: <span>"+
					strings.Replace(prod[1].secret, "_", "&#95;", 1)+"</span></div></body></html>")+"\r\n--alt--\r\n"), prod[1]},
		{"quoted in a reply", "reply@acme.example", partnerEmail("reply@acme.example", "Re: New sandbox key", "In-Reply-To: <"+first.ID+".ack@buildmarkets.ai>\r\n",
			"text/plain; charset=utf-8", "Please ignore what my colleague wrote below.\r\n\r\nOn Thu, Bob wrote:\r\n> our sandbox pair:\r\n> X-API-Key: "+sb.apiKey+
				"\r\n> X-API-Secret: "+sb.secret+"\r\n"), sb},
		{"an attached .env", "env@acme.example", partnerEmail("env@acme.example", "Our config", "", "multipart/mixed; boundary=b1",
			"--b1\r\nContent-Type: text/plain\r\n\r\nOur config is attached, it fails with 401.\r\n"+
				"--b1\r\nContent-Type: application/octet-stream; name=\"prod.env\"\r\nContent-Disposition: attachment; filename=\"prod.env\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
				testenv.Base64Lines("BM_API_KEY="+prod[2].apiKey+"\nBM_API_SECRET="+prod[2].secret+"\n")+"--b1--\r\n"), prod[2]},
		{"a forwarded message", "fwd@acme.example", partnerEmail("fwd@acme.example", "Fwd: keys", "", "multipart/mixed; boundary=b1",
			"--b1\r\nContent-Type: text/plain\r\n\r\nForwarding our developer's email, see below.\r\n"+
				"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: dev@acme.example\r\nSubject: keys\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
				testenv.Base64Lines(`{"id": "`+prod[3].id+`", "api_key": "`+prod[3].apiKey+`", "api_secret": "`+prod[3].secret+`"}`)+"\r\n--b1--\r\n"), prod[3]},
	}
	for _, m := range emails {
		deliver(m.raw)
	}
	taken(1 + len(emails))

	// A revoke request for each exact key waits for a person.
	all, err := q.List(ctx, queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range emails {
		var found []*keydesk.Request
		for _, r := range all {
			if r.KindOf() == keydesk.KindRevoke && r.Partner == "acme" && r.Environment == m.pair.env && r.KeyID == m.pair.id {
				found = append(found, r)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %d revoke requests for acme/%s/%s, want 1", m.name, len(found), m.pair.env, m.pair.id)
			continue
		}
		r := found[0]
		if r.State != keydesk.StatePendingReview || !r.HasFlag(keydesk.FlagSecretExposed) || r.Label != m.pair.label ||
			!strings.Contains(r.Reason, "sha256:"+fingerprint(m.pair.secret)) {
			t.Errorf("%s: revoke request %+v", m.name, r)
		}
	}

	// The requester got one email about each, naming the key, never its secret.
	outbox, err := q.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range emails {
		var notices, alerts int
		for _, o := range outbox {
			if o.Kind == keydesk.KindSecretExposed && o.InReplyTo == m.id {
				notices++
				if !slices.Equal(o.To, []string{"ada@acme.example"}) || !strings.Contains(o.Text, m.pair.id) || !strings.Contains(o.Text, m.pair.label) {
					t.Errorf("%s: notice %+v", m.name, o)
				}
			}
			if o.Kind == keydesk.KindAlert && strings.Contains(o.Text, "sha256:"+fingerprint(m.pair.secret)) {
				alerts++
			}
		}
		if notices != 1 || alerts != 1 {
			t.Errorf("%s: %d notices to the requester and %d alerts to support, want 1 and 1", m.name, notices, alerts)
		}
	}
	var mbuf bytes.Buffer
	reg.Write(&mbuf)
	if !strings.Contains(mbuf.String(), `keydesk_exposed_secrets_total{partner="acme"} 5`) {
		t.Errorf("metrics:\n%s", grepLines(mbuf.String(), "exposed"))
	}
	evs, err := q.Audit(ctx, queue.AuditQuery{Kind: "system"})
	if err != nil {
		t.Fatal(err)
	}
	var detections int
	for _, ev := range evs {
		if ev.Action == "secret-exposed" {
			detections++
		}
	}
	if detections != len(emails) {
		t.Errorf("%d secret-exposed audit events, want %d", detections, len(emails))
	}

	// One click: revoke the plain-text email's key and issue a replacement.
	var revoke *keydesk.Request
	for _, r := range all {
		if r.KindOf() == keydesk.KindRevoke && r.KeyID == prod[0].id && r.Environment == keydesk.Production {
			revoke = r
		}
	}
	var pageTexts []string
	c := startChromium(t, e.ts.URL+"/queue")
	c.signIn("alice")
	if revoke == nil {
		t.Error("no revoke request to act on")
	} else {
		if err := chromedp.Do(c.ctx, chromedp.Navigate(e.ts.URL+"/requests/"+revoke.ID), chromedp.WaitVisible(chromedp.CSS(`.banner.exposed`))); err != nil {
			t.Fatalf("request page: %v", err)
		}
		c.shot("exposed-revoke.png")
		if b := c.text(".banner.exposed"); !strings.Contains(b, "live API secret was pasted") {
			t.Errorf("banner %q", b)
		}
		pageTexts = append(pageTexts, c.text("body"))
		if err := chromedp.Do(c.ctx, chromedp.Click(chromedp.CSS(`form[action$="/revoke-replace"] button`)), chromedp.WaitVisible(chromedp.CSS(`.notice`))); err != nil {
			t.Fatalf("revoke and replace: %v", err)
		}
		pageTexts = append(pageTexts, c.text("body"))
		after := e.get(revoke.ID)
		if len(after.Approvals) != 1 || after.Approvals[0].By != "alice" {
			t.Errorf("revoke request after the click: %s, approvals %+v", after.State, after.Approvals)
		}
		all, _ = q.List(ctx, queue.Filter{})
		var rotates []*keydesk.Request
		for _, r := range all {
			if r.KindOf() == keydesk.KindRotate {
				rotates = append(rotates, r)
			}
		}
		if len(rotates) != 1 || rotates[0].ReplacesKeyID != prod[0].id || rotates[0].Environment != keydesk.Production ||
			rotates[0].Label != prod[0].label || rotates[0].State != keydesk.StatePendingReview || rotates[0].Rotation == nil || rotates[0].Rotation.RevokeRequest != revoke.ID {
			t.Errorf("rotate requests %+v", rotates)
		}
		if err := chromedp.Do(c.ctx, chromedp.Navigate(e.ts.URL+"/queue"), chromedp.WaitVisible(chromedp.CSS(`table.queue`))); err != nil {
			t.Fatal(err)
		}
		pageTexts = append(pageTexts, c.text("body"))
	}
	// Every API answer and page, as a viewer sees them.
	var answers []string
	b := e.login("viv")
	for _, path := range []string{"/queue", "/queue?state=all", "/mail", "/audit", "/batches"} {
		_, _, body := b.get(path)
		answers = append(answers, body)
	}
	for _, r := range all {
		_, _, body := b.get("/requests/" + r.ID)
		answers = append(answers, body)
		_, js := e.api("viv", "GET", "/api/v1/requests/"+r.ID, nil)
		answers = append(answers, fmt.Sprint(js))
		if err := chromedp.Do(c.ctx, chromedp.Navigate(e.ts.URL+"/requests/"+r.ID), chromedp.WaitVisible(chromedp.CSS(`h1`))); err != nil {
			t.Fatal(err)
		}
		pageTexts = append(pageTexts, c.text("body"))
	}
	for _, path := range []string{"/api/v1/requests", "/api/v1/requests?state=pending_review", "/api/v1/mail"} {
		_, js := e.api("viv", "GET", path, nil)
		answers = append(answers, fmt.Sprint(js))
	}

	// Now grep for every byte of every secret.
	places := map[string][]byte{
		"intake's log":         logs.Bytes(),
		"review's log":         e.logs.Bytes(),
		"metrics":              mbuf.Bytes(),
		"pages and API":        []byte(strings.Join(answers, "\n")),
		"what Chromium showed": []byte(strings.Join(pageTexts, "\n")),
	}
	for name, data := range storeContents(t, q) {
		places[name] = data
	}
	for _, pr := range pairs {
		for name, data := range places {
			for _, s := range []string{pr.secret, pr.secret[len("bm_secret_"):], base64.StdEncoding.EncodeToString([]byte(pr.secret))[:24]} {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("a secret (sha256:%s) is in %s", fingerprint(pr.secret), name)
				}
			}
		}
	}
	if len(places["stream KV_requests"]) == 0 || len(places["stream AUDIT"]) == 0 {
		t.Errorf("the grep read nothing of the store: %d streams", len(places))
	}
}

// storeContents reads every message of every stream of the store: the
// KV buckets and the object store are streams too.
func storeContents(t *testing.T, q *queue.Conn) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	_, js := q.Raw()
	out := map[string][]byte{}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(m.Subject + "\n")
			for k, v := range m.Header {
				b.WriteString(k + ": " + strings.Join(v, " ") + "\n")
			}
			b.Write(m.Data)
			b.WriteString("\n")
		}
		out["stream "+name] = b.Bytes()
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fingerprint is how keydesk names a secret: the first 8 hex digits of
// its SHA-256.
func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

func grepLines(s, word string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestRevokeAndReplaceAPI: on a secret-exposed revoke request, the
// action approves the revocation and asks for the replacement (a rotate
// request with the key's label and scopes, replacing it, its old key's
// revocation recorded); a second call makes no second replacement; the
// action refuses any other request, and a viewer.
func TestRevokeAndReplaceAPI(t *testing.T) {
	e := newEnv(t)
	rv := e.request(func(r *keydesk.Request) {
		r.Kind, r.KeyID, r.Label = keydesk.KindRevoke, "key-004", "sandbox-backend"
		r.Flags = []keydesk.Flag{keydesk.FlagSecretExposed}
		r.Reason = "secret exposed in the email of 27 November 2026 (sha256:1a2b3c4d)"
	}, "")
	issue := e.request(nil, "")

	if code, body := e.api("viv", "POST", "/api/v1/requests/"+rv.ID+"/revoke-replace", nil); code != 403 {
		t.Errorf("a viewer: %d %v", code, body)
	}
	if code, body := e.api("alice", "POST", "/api/v1/requests/"+issue.ID+"/revoke-replace", nil); code != 409 || body["code"] != "invalid_kind" {
		t.Errorf("an issue request: %d %v", code, body)
	}
	code, body := e.api("alice", "POST", "/api/v1/requests/"+rv.ID+"/revoke-replace", nil)
	if code != 200 || body["state"] != "approved" || !strings.Contains(fmt.Sprint(body["message"]), "replacement") {
		t.Fatalf("revoke-replace: %d %v", code, body)
	}
	if code, _ := e.api("alice", "POST", "/api/v1/requests/"+rv.ID+"/revoke-replace", nil); code != 409 {
		t.Errorf("a second call: %d", code)
	}
	all, err := e.q.List(context.Background(), queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var rot []*keydesk.Request
	for _, r := range all {
		if r.KindOf() == keydesk.KindRotate {
			rot = append(rot, r)
		}
	}
	if len(rot) != 1 {
		t.Fatalf("%d rotate requests, want 1", len(rot))
	}
	r := rot[0]
	if r.ReplacesKeyID != "key-004" || r.Partner != rv.Partner || r.Environment != rv.Environment || r.Label != rv.Label ||
		!slices.Equal(r.Scopes, rv.Scopes) || r.State != keydesk.StatePendingReview || r.Rotation == nil || r.Rotation.RevokeRequest != rv.ID {
		t.Errorf("rotate request %+v", r)
	}
}
