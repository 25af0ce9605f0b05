package config

import (
	"strings"
	"testing"
)

// TestNotify: notify.webhook_url is a secret that may come from a file or
// a variable, must be https:// (http:// to loopback only), and no problem
// with it quotes its path, where the channel's token is; notify.digest
// needs smtp.support_address.
func TestNotify(t *testing.T) {
	const token = "T000/B000/XXXXSECRETXXXX"
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		file       string // the content of hook.txt
		want       string // a problem; empty: none
		wantURL    string
	}{
		{name: "https", yaml: "notify: {webhook_url: \"https://hooks.slack.example/services/" + token + "\"}",
			wantURL: "https://hooks.slack.example/services/" + token},
		{name: "from a variable", yaml: "notify: {webhook_url: \"${HOOK}\"}",
			env: map[string]string{"HOOK": "https://chat.example/hooks/" + token}, wantURL: "https://chat.example/hooks/" + token},
		{name: "from a file", yaml: "notify: {webhook_url_file: hook.txt}",
			file: "https://chat.example/hooks/" + token + "\n", wantURL: "https://chat.example/hooks/" + token},
		{name: "http to loopback", yaml: "notify: {webhook_url: \"http://127.0.0.1:8065/hooks/" + token + "\"}",
			wantURL: "http://127.0.0.1:8065/hooks/" + token},
		{name: "http elsewhere", yaml: "notify: {webhook_url: \"http://chat.example/hooks/" + token + "\"}",
			want: "keydesk.yaml: notify.webhook_url: http://chat.example sends the webhook's token in clear text: use https://"},
		{name: "no host", yaml: "notify: {webhook_url: \"hooks/" + token + "\"}",
			want: "keydesk.yaml: notify.webhook_url: is not an absolute URL with a host"},
		{name: "another scheme", yaml: "notify: {webhook_url: \"ftp://chat.example/" + token + "\"}",
			want: "keydesk.yaml: notify.webhook_url: scheme \"ftp\": use https://"},
		{name: "user info", yaml: "notify: {webhook_url: \"https://u:SECRET@chat.example/x\"}",
			want: "keydesk.yaml: notify.webhook_url: holds a user name or password before the host"},
		{name: "both forms", yaml: "notify: {webhook_url: \"https://a.example/x\", webhook_url_file: hook.txt}", file: "https://a.example/y",
			want: "keydesk.yaml: notify.webhook_url_file: give either webhook_url or webhook_url_file, not both"},
		{name: "digest without support address", yaml: "notify: {digest: \"CRON_TZ=UTC 0 9 * * 1-5\"}",
			want: "keydesk.yaml: notify.digest: the digest goes to smtp.support_address, which is not set"},
		{name: "digest", yaml: "smtp: {support_address: support@buildmarkets.ai}\nnotify: {digest: \"CRON_TZ=UTC 0 9 * * 1-5\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file != "" {
				write(t, dir, "hook.txt", tc.file)
			}
			c, err := load(write(t, dir, "keydesk.yaml", tc.yaml+"\n"), env(tc.env))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("load: %v\nwant a problem %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("the problem quotes the webhook's token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if got := c.Notify.WebhookURL.Reveal(); got != tc.wantURL {
				t.Errorf("webhook_url = %q, want %q", got, tc.wantURL)
			}
		})
	}
}
