package testenv

import (
	"bytes"
	"os"
	"testing"
)

// Golden compares got with the file at path (testdata/<name>.golden), or
// rewrites the file with got when update is set (a test package's
// -update flag).
func Golden(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("differs from %s (go test -update rewrites it if the change is meant):\n%s", path, got)
	}
}
