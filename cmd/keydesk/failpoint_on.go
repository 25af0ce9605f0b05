//go:build failpoint

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// failpointFromEnv returns the crash-test hook set by KEYDESK_FAILPOINT, or nil.
func failpointFromEnv() func(string) {
	v := os.Getenv(failpointEnv)
	if v == "" {
		return nil
	}
	step, nth, _ := strings.Cut(v, ":")
	n, err := strconv.Atoi(nth)
	if err != nil || n < 1 {
		n = 1
	}
	var hits atomic.Int64
	fmt.Fprintf(os.Stderr, "keydesk: %s=%s: this process kills itself at that step (a test hook)\n", failpointEnv, v)
	return func(s string) {
		if s == step && hits.Add(1) == int64(n) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
