package main

import (
	"fmt"
	"net/http/httptest"
	"strings"
)

// checkServing asks the app what an operator would: /readyz reports the
// role's check as ok, and /metrics holds the given sample line.
func checkServing(a *app, check, sample string) error {
	rec := httptest.NewRecorder()
	a.serveReady(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), check+": ok") {
		return fmt.Errorf("/readyz %d:\n%s", rec.Code, rec.Body.String())
	}
	var m strings.Builder
	a.metrics.Write(&m)
	if !strings.Contains(m.String(), sample) {
		return fmt.Errorf("metrics lack %s:\n%s", sample, m.String())
	}
	return nil
}
