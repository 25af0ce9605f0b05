package crypto

import (
	"bytes"
	"testing"
)

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// TestWipeBuffer checks that plaintext does not outlive the buffer: storage
// left behind when it grows is zeroed at once, and wipe zeroes the rest.
func TestWipeBuffer(t *testing.T) {
	w := newWipeBuffer(16)
	w.WriteString("bm_secret_")
	old := w.b[:cap(w.b)]
	w.Write(bytes.Repeat([]byte("s"), 100)) // forces a grow
	if !allZero(old) {
		t.Errorf("storage left by a grow still holds %q", old)
	}
	w.writeCRLF("line\nnext\n")
	w.jsonString([]byte("a\"b\\c\x01"))
	w.writeBase64([]byte("secret"))
	if !bytes.Contains(w.b, []byte("line\r\nnext\r\n")) || !bytes.Contains(w.b, []byte(`"a\"b\\c\u0001"`)) || !bytes.HasSuffix(w.b, []byte("c2VjcmV0\r\n")) {
		t.Errorf("buffer holds %q", w.b)
	}
	all := w.b[:cap(w.b)]
	w.wipe()
	if !allZero(all) {
		t.Errorf("wipe left %q", all)
	}
}

func TestAttachmentName(t *testing.T) {
	tests := []struct{ label, keyID, want string }{
		{"prod-trading-engine", "key-001", "buildmarkets-key-prod-trading-engine.json"},
		{"Treasury reconciliation", "key-001", "buildmarkets-key-treasury-reconciliation.json"},
		{"Équipe Trésorerie", "key-001", "buildmarkets-key-equipe-tresorerie.json"},
		{"../../etc/passwd", "key-001", "buildmarkets-key-etc-passwd.json"},
		{"日本語のラベル", "key-001", "buildmarkets-key-key-001.json"},
		{"\"; filename=evil.exe", "k", "buildmarkets-key-filename-evil-exe.json"},
		{"", "", "buildmarkets-key-pair.json"},
		{string(bytes.Repeat([]byte("a"), 64)), "k", "buildmarkets-key-" + string(bytes.Repeat([]byte("a"), 48)) + ".json"},
	}
	for _, tc := range tests {
		if got := attachmentName(tc.label, tc.keyID); got != tc.want {
			t.Errorf("attachmentName(%q, %q) = %q, want %q", tc.label, tc.keyID, got, tc.want)
		}
	}
}

func TestTruncateRunes(t *testing.T) {
	long := string(bytes.Repeat([]byte("é"), 300))
	got := truncateRunes(long, maxSubjectRunes)
	if n := len([]rune(got)); n != maxSubjectRunes || got[len(got)-len("…"):] != "…" {
		t.Errorf("truncated to %d runes: %q", n, got)
	}
	if truncateRunes("short", 10) != "short" {
		t.Error("a short subject was changed")
	}
}
