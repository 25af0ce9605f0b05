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

// Triggers of a batch record. A record in state requested with one of
// these asks the batch role for that run; the review role writes them (it
// never calls the API itself), the batch role takes them at once.
const (
	TriggerSchedule = "schedule" // the batch schedule
	TriggerManual   = "manual"   // a person's run-now: a whole batch
	// TriggerRevoke asks for the approved revoke requests to be revoked
	// now, without waiting for the schedule and without generating keys.
	TriggerRevoke = "revoke"
	// TriggerInventory asks for every partner account's keys to be listed
	// now and the key inventories written.
	TriggerInventory = "inventory"
)

// Batch is one run of key generation: its trigger and what became of
// each request it touched.
type Batch struct {
	ID        string     `json:"id"`
	Trigger   string     `json:"trigger"` // schedule, manual, revoke, inventory
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
