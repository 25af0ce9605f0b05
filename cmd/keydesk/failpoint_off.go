//go:build !failpoint

package main

// failpointFromEnv is nil in a production build: KEYDESK_FAILPOINT, if
// set, is ignored, so no environment variable can make keydesk kill
// itself. Tests build with -tags failpoint to get the hook.
func failpointFromEnv() func(string) { return nil }
