package main

import (
	"strings"

	"github.com/buildmarkets/keydesk"
)

// initEnvData is one partner environment in partners.yaml.
type initEnvData struct {
	Name, APIKey, SecretVar string
	AutoApprove             bool
}

// initTemplateData is what the templates of keydesk.yaml and
// partners.yaml see.
type initTemplateData struct {
	A            map[string]string
	Authserv     []string
	Internal     []string
	Requesters   []string
	SMTPPassword bool
	OIDC         bool
	LocalLogin   bool
	ContactKey   string
	ContactFPR   string
	Envs         []initEnvData
}

func initData(a *answers) initTemplateData {
	under := map[string]string{} // template fields cannot hold a dash
	for k, v := range a.v {
		under[strings.ReplaceAll(k, "-", "_")] = v
	}
	d := initTemplateData{
		A: under, Authserv: splitList(a.get("authserv-id")), Internal: splitList(a.get("internal-domains")),
		Requesters: splitList(a.get("requesters")), SMTPPassword: a.has("smtp-password"),
		OIDC: a.has("oidc-issuer"), LocalLogin: a.has("admin"),
		ContactKey: contactKeyFile(a), ContactFPR: a.contactFPR,
	}
	for _, e := range keydesk.Environments {
		if !a.has(string(e) + "-api-key") {
			continue
		}
		auto, _ := yesNo(a.get("sandbox-auto-approve"))
		d.Envs = append(d.Envs, initEnvData{
			Name: string(e), APIKey: a.get(string(e) + "-api-key"), SecretVar: credentialVar(a.get("partner-id"), e),
			AutoApprove: e == keydesk.Sandbox && auto,
		})
	}
	return d
}

// keydeskYAML is the generated keydesk.yaml, commented as
// deploy/examples/keydesk.yaml is, so the operator can read what each
// setting does.
const keydeskYAML = `# keydesk.yaml — written by 'keydesk init'. 'keydesk check --config keydesk.yaml'
# validates it (--connect also logs in to every server). Relative paths are
# relative to this file's directory; every secret is a *_file under secrets/
# (under systemd, $CREDENTIALS_DIRECTORY/secrets_NAME when it is loaded as a
# credential directory). The README lists every key; deploy/examples/keydesk.yaml
# is a fuller example.

# Where the embedded NATS server stores its data (and other local state).
data_dir: {{q .A.data_dir}}

nats:
{{- if .A.nats_url}}
  url: {{q .A.nats_url}}
  replicas: 3      # every stream and bucket on three nodes
  # On a cluster with TLS and a user per role, add tls_ca_file, tls_cert,
  # tls_key, skip_setup and inbox_prefix: deploy/examples/keydesk-cluster.yaml.
  # Run 'keydesk nats-setup' once (as the NATS admin) before the roles start.
{{- else}}
  url: ""          # empty: embedded single-node JetStream under data_dir
  replicas: 1      # 1 embedded; 3 on a cluster
{{- end}}

imap:
  address: {{q .A.imap_address}}
  security: {{.A.imap_security}}   # tls | starttls | none (none: loopback only)
  username: {{q .A.imap_username}}
  password_file: secrets/imap-password
  mailbox: INBOX
  processed_mailbox: Processed     # mail whose requests are queued (created if missing)
  rejected_mailbox: Rejected       # mail set aside, with the reason recorded
  poll_interval: 60s               # rescan interval (IDLE reports new mail at once)
  max_message_bytes: 10MiB         # kept for review up to this; larger mail is still read, its copy cut
  hard_max_message_bytes: 100MiB   # larger mail is set aside unread

smtp:
  address: {{q .A.smtp_address}}
  security: {{.A.smtp_security}}
{{- if .SMTPPassword}}
  username: {{q .A.smtp_username}}
  password_file: secrets/smtp-password
{{- else}}
  auth: none                       # no login: a relay that trusts this host
{{- end}}
  from: {{q .A.smtp_from}}
  support_address: {{q .A.support_address}}   # batch reports and alerts

api:
  sandbox:
    base_url: {{q .A.api_sandbox_url}}
    timeout: 30s
    rate_limit: 5          # requests per second, across all partners
  production:
    base_url: {{q .A.api_production_url}}
    timeout: 30s
    rate_limit: 5

# keydesk's own OpenPGP key, made by 'keydesk init': every delivery is
# signed with it. Partners verify it by its fingerprint (keydesk check
# prints it; docs/operations.md, "Rotating keydesk's signing key").
signing_key:
  file: keys/keydesk-signing.asc
  passphrase_file: secrets/signing-passphrase

sender_auth:
  # Only Authentication-Results headers stamped by our own MTA count.
  trusted_authserv_ids: {{list .Authserv}}
  require_dmarc: true
  # Relationship Managers forward partners' requests from these domains;
  # list their addresses in relationship_managers so no other address
  # there can vouch for a partner.
  internal_domains: {{list .Internal}}

batch:
  schedule: "CRON_TZ=UTC 0 10,16 * * 1-5"   # cron, or "@every 5m"
  concurrency: 8

review:
  listen: {{q .A.listen}}
  users_file: users.yaml
  four_eyes: [production, keys:manage]    # these need two approvers
  session_idle: 30m
  base_url: {{q .A.base_url}}
{{- if .OIDC}}
  # Staff sign in with the company's identity provider (docs/operations.md,
  # "Single sign-on"); its groups give the roles.
  local_login: {{.LocalLogin}}             # users.yaml passwords (break-glass); false: password sign-in is off
  oidc:
    issuer: {{q .A.oidc_issuer}}
    client_id: {{q .A.oidc_client_id}}
    client_secret_file: secrets/oidc-client-secret
    redirect_url: ""         # default: review.base_url + /login/oidc/callback
    scopes: [openid, email, profile]   # add "groups" where the IdP needs it
    roles_claim: {{q .A.oidc_roles_claim}}
    roles:                   # group -> role; the highest role a person's groups give wins
      # viewer: [keydesk-viewers]
      # approver: [keydesk-approvers]
      admin: [{{q .A.oidc_admin_group}}]
    reauth_after: 1h         # an approval needs a sign-in at the IdP newer than this
{{- else}}
  # Single sign-on for staff (OpenID Connect; docs/operations.md, "Single
  # sign-on"): register keydesk at the identity provider with the callback
  # review.base_url + /login/oidc/callback, then:
  # local_login: true        # users.yaml passwords stay as break-glass
  # oidc:
  #   issuer: https://idp.example.com/realms/corp
  #   client_id: keydesk
  #   client_secret_file: secrets/oidc-client-secret
  #   roles_claim: groups
  #   roles: {viewer: [keydesk-viewers], approver: [keydesk-approvers], admin: [keydesk-admins]}
{{- end}}

# Support hears of waiting work (docs/operations.md, "Notifications"): a
# chat post per request that needs review (notify.webhook_url_file:
# secrets/webhook-url), and a digest email to smtp.support_address.
notify:
  digest: "CRON_TZ=UTC 0 9 * * 1-5"         # empty: no digest

delivery:
  retry_for: 48h
  revoke_undelivered_after: 72h

log:
  level: info      # debug | info | warn | error
  format: ""       # text | json (empty: text on a terminal, JSON otherwise)

# Every role runs here, batch too: start keydesk with batch.env in its
# environment, which names the partners' API secrets to partners.yaml.
partners_file: partners.yaml
`

// partnersYAML is the generated partners.yaml.
const partnersYAML = `# partners.yaml — who may request keys, and where the keys go. Written by
# 'keydesk init'; add partners by hand (docs/operations.md, "Adding a
# partner"), then 'keydesk check' and a reload (SIGHUP).
#
# A key pair goes only to the technical contact below, encrypted to the key
# whose full fingerprint is pinned here: it was read from the key file init
# was given. Verify it with the contact out of band (a call to a known
# number) before the first delivery.
#
# Only the batch role gets the partners' API secrets: each api_secret_file
# names a variable that batch.env sets for the batch role alone.
partners:
  - id: {{.A.partner_id}}
    name: {{q .A.partner_name}}
    requesters: {{list .Requesters}}
    technical_contact:
      email: {{q .A.contact_email}}
      pgp_key_file: {{.ContactKey}}
      fingerprint: {{q .ContactFPR}}
    # allowed_scopes: [accounts:read, trading:read, trading:write, marketdata:read]
    # left out: every scope but keys:manage may be asked for without a flag
    environments:
{{- range .Envs}}
      {{.Name}}:
        api_key: {{q .APIKey}}
        api_secret_file: "${ {{- .SecretVar}}:-}"
{{- if .AutoApprove}}
        auto_approve: true
{{- end}}
{{- end}}
`
