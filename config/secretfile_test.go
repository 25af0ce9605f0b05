package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretFilesFromCredentials follows the secrets convention: a
// relative "<name>_file" is found as systemd names the file of a loaded
// directory ($CREDENTIALS_DIRECTORY/secrets_imap-password) when it is
// there, else relative to the config file's directory; an absolute path
// is read as it is.
func TestSecretFilesFromCredentials(t *testing.T) {
	tests := []struct {
		name     string
		value    string            // imap.password_file as written
		creds    map[string]string // files of $CREDENTIALS_DIRECTORY; nil: not set
		local    map[string]string // files beside keydesk.yaml
		want     string            // the password loaded
		wantErrs []string          // each in the error, when it must fail
	}{
		{
			name:  "credential of a loaded directory",
			value: "secrets/imap-password",
			creds: map[string]string{"secrets_imap-password": "from-systemd\n"},
			want:  "from-systemd",
		},
		{
			name:  "the credential wins over the file beside the config",
			value: "secrets/imap-password",
			creds: map[string]string{"secrets_imap-password": "from-systemd"},
			local: map[string]string{"secrets/imap-password": "from-etc"},
			want:  "from-systemd",
		},
		{
			name:  "not a credential: beside the config",
			value: "secrets/imap-password",
			creds: map[string]string{"secrets_smtp-password": "other"},
			local: map[string]string{"secrets/imap-password": "from-etc"},
			want:  "from-etc",
		},
		{
			name:  "no credentials directory: beside the config",
			value: "secrets/imap-password",
			local: map[string]string{"secrets/imap-password": "from-etc"},
			want:  "from-etc",
		},
		{
			name:  "a path that leaves the config's directory is never a credential",
			value: "../outside",
			creds: map[string]string{".._outside": "from-systemd"},
			local: map[string]string{"../outside": "from-parent"},
			want:  "from-parent",
		},
		{
			name:     "in neither place: both named",
			value:    "secrets/imap-password",
			creds:    map[string]string{},
			wantErrs: []string{"keydesk.yaml: imap.password_file: secrets/imap-password", "credential secrets_imap-password", "CREDENTIALS_DIRECTORY=", "/secrets/imap-password", "no such file"},
		},
		{
			// Only a credential that does not exist falls through: one
			// that cannot be read is never replaced by another file.
			name:     "a credential that cannot be read is an error",
			value:    "secrets/imap-password",
			creds:    map[string]string{"secrets_imap-password/": ""},
			local:    map[string]string{"secrets/imap-password": "from-etc"},
			wantErrs: []string{"imap.password_file", "secrets_imap-password: not a regular file"},
		},
		{
			name:     "too large to be a secret",
			value:    "secrets/imap-password",
			creds:    map[string]string{"secrets_imap-password": strings.Repeat("x", maxSecretBytes+1)},
			local:    map[string]string{"secrets/imap-password": "from-etc"},
			wantErrs: []string{"imap.password_file", "secrets_imap-password: larger than 64 KiB"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "etc")
			vars := map[string]string{}
			if tc.creds != nil {
				creds := filepath.Join(root, "credentials")
				if err := os.Mkdir(creds, 0o700); err != nil {
					t.Fatal(err)
				}
				for n, c := range tc.creds {
					if d, ok := strings.CutSuffix(n, "/"); ok {
						if err := os.Mkdir(filepath.Join(creds, d), 0o700); err != nil {
							t.Fatal(err)
						}
						continue
					}
					write(t, creds, n, c)
				}
				vars[credentialsDirEnv] = creds
			}
			for n, c := range tc.local {
				write(t, dir, n, c)
			}
			p := write(t, dir, "keydesk.yaml", "imap: {address: imap.example.com:993, username: keydesk, password_file: "+tc.value+"}\n")
			c, err := load(p, env(vars))
			if tc.wantErrs != nil {
				if err == nil {
					t.Fatalf("loaded %q, want an error", c.IMAP.Password.Reveal())
				}
				for _, w := range tc.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.IMAP.Password.Reveal(); got != tc.want {
				t.Errorf("password %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAbsoluteSecretFileIgnoresCredentials: an absolute path is the file
// the operator named, whatever $CREDENTIALS_DIRECTORY holds.
func TestAbsoluteSecretFileIgnoresCredentials(t *testing.T) {
	root := t.TempDir()
	abs := write(t, root, "abs/imap-password", "absolute")
	creds := filepath.Join(root, "credentials")
	write(t, creds, CredentialName(abs), "from-systemd")
	write(t, creds, CredentialName(strings.TrimPrefix(abs, "/")), "from-systemd")
	p := write(t, root, "etc/keydesk.yaml", "imap: {address: imap.example.com:993, username: keydesk, password_file: "+abs+"}\n")
	c, err := load(p, env(map[string]string{credentialsDirEnv: creds}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.IMAP.Password.Reveal(); got != "absolute" {
		t.Errorf("password %q, want the absolute file's", got)
	}
}

// TestPartnerSecretFromCredentials: partners.yaml's api_secret_file,
// named through the batch role's variable as in deploy/examples, is found
// as the credential partner-credentials_<file> of the batch unit.
func TestPartnerSecretFromCredentials(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "etc")
	write(t, dir, "keys/acme.asc", "KEY")
	p := write(t, dir, "partners.yaml", `
partners:
  - id: acme
    name: Acme
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: keys/acme.asc, fingerprint: "`+strings.Repeat("AB", 20)+`"}
    environments:
      production: {api_key: bm_key_acme, api_secret_file: "${ACME_PRODUCTION_SECRET_FILE:-}"}
`)
	creds := filepath.Join(root, "credentials")
	write(t, creds, "partner-credentials_acme-production-secret", "bm_secret_from_systemd\n")
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"batch under systemd", map[string]string{"ACME_PRODUCTION_SECRET_FILE": "partner-credentials/acme-production-secret", credentialsDirEnv: creds}, "bm_secret_from_systemd"},
		{"another role: no variable, no secret", map[string]string{credentialsDirEnv: creds}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := loadPartners(p, fakeChecker{}, time.Now(), env(tc.vars))
			if err != nil {
				t.Fatal(err)
			}
			if got := reg.Partners[0].Environments["production"].APISecret.Reveal(); got != tc.want {
				t.Errorf("api_secret %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCredentialName(t *testing.T) {
	for in, want := range map[string]string{
		"secrets/imap-password":                      "secrets_imap-password",
		"partner-credentials/acme-production-secret": "partner-credentials_acme-production-secret",
		"./secrets//smtp-password":                   "secrets_smtp-password",
		"imap-password":                              "imap-password",
	} {
		if got := CredentialName(in); got != want {
			t.Errorf("CredentialName(%q) = %q, want %q", in, got, want)
		}
	}
}
