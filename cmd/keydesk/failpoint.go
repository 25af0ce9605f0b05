package main

// failpointEnv names the crash-test hook: KEYDESK_FAILPOINT=step[:n] makes
// the batch role SIGKILL its own process at the n-th (default first) time
// a request reaches that step (after-generating, after-create, after-seal,
// after-enqueue, after-generated; for a revocation after-revoking, after
// the record says revoking, and after-revoke, between the API's answer
// and the record). Only a binary built with
// -tags failpoint reads it (failpoint_on.go): the crash and chaos tests
// build one; a production build ignores the variable (failpoint_off.go).
const failpointEnv = "KEYDESK_FAILPOINT"
