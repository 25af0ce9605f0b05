package keydesk

import "time"

// BatchState is where a batch run stands.
type BatchState string

const (
	BatchRequested BatchState = "requested" // asked for (run now); a batch role will take it
	BatchRunning   BatchState = "running"
	BatchDone      BatchState = "done"
	BatchFailed    BatchState = "failed" // the batch itself could not run (its requests are unharmed)
)

// Triggers of a batch run. A person's run-now is "manual"; the review
// role asks for the other two without calling the API itself.
const (
	TriggerSchedule  = "schedule"
	TriggerManual    = "manual"
	TriggerRevoke    = "revoke"    // revoke the approved revocations now, without generating keys
	TriggerInventory = "inventory" // list the partners' keys now
)

// Batch is one run of key generation: its trigger and what became of
// each request it touched.
type Batch struct {
	ID        string     `json:"id"`
	Trigger   string     `json:"trigger"` // TriggerSchedule, TriggerManual, TriggerRevoke, TriggerInventory
	By        string     `json:"by"`      // who asked (staff name), or "schedule"
	State     BatchState `json:"state"`
	Requested time.Time  `json:"requested_at"`
	Started   time.Time  `json:"started_at,omitzero"`
	Ended     time.Time  `json:"ended_at,omitzero"`
	// Outcomes lists each request handled, in the order handled.
	Outcomes []BatchOutcome `json:"outcomes,omitempty"`
	// Counts by outcome (generated, retry, blocked, failed, reconciled, …).
	Counts map[string]int `json:"counts,omitempty"`
	Error  string         `json:"error,omitempty"`
	// Revision is the store's revision, for compare-and-set.
	Revision uint64 `json:"-"`
}

// BatchOutcome is what one batch did with one request.
type BatchOutcome struct {
	RequestID string `json:"request_id"`
	Partner   string `json:"partner,omitempty"`
	Outcome   string `json:"outcome"`
	Detail    string `json:"detail,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
}
