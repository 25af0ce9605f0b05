package keydesk

// State is where a request stands. The names are part of the external
// interface (JSON API, CLI, metrics): never rename one.
type State string

const (
	StateReceived       State = "received"
	StatePendingReview  State = "pending_review"
	StateApproved       State = "approved"
	StateGenerating     State = "generating"
	StateGenerated      State = "generated"
	StateDelivered      State = "delivered"
	StateDeliveryFailed State = "delivery_failed"
	StateRevoking       State = "revoking"
	StateRevoked        State = "revoked"
	StateRejected       State = "rejected"
	StateCancelled      State = "cancelled"
	StateBlocked        State = "blocked"
	StateFailed         State = "failed"
)

// States lists every state in the order of the flow.
var States = []State{
	StateReceived, StatePendingReview, StateApproved, StateGenerating,
	StateGenerated, StateDelivered, StateDeliveryFailed, StateRevoking, StateRevoked,
	StateRejected, StateCancelled, StateBlocked, StateFailed,
}

// transitions is the state table of DESIGN.md. Approved may also be
// cancelled (support changes its mind before a batch), and a request may be
// created directly in approved when its partner's environment auto-approves.
// A partner's correction sends an approved or blocked request back to
// pending_review until a person accepts or refuses it.
//
// A revoke request goes approved → revoking → revoked (failed when the
// partner's credentials are refused); an issued key revoked later takes
// its request from delivered to revoked.
var transitions = map[State][]State{
	StateReceived:       {StatePendingReview, StateApproved, StateRejected},
	StatePendingReview:  {StateApproved, StateRejected, StateCancelled},
	StateApproved:       {StateGenerating, StateRevoking, StateBlocked, StateFailed, StateCancelled, StatePendingReview},
	StateGenerating:     {StateGenerated, StateApproved, StateBlocked, StateFailed},
	StateGenerated:      {StateDelivered, StateDeliveryFailed},
	StateDelivered:      {StateRevoked},
	StateDeliveryFailed: {StateRevoked},
	StateRevoking:       {StateRevoked, StateFailed},
	StateBlocked:        {StateApproved, StateCancelled, StatePendingReview},
	StateFailed:         {StateApproved, StateCancelled},
}

// CanTransition reports whether the state table allows from → to.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Next lists the states reachable from s in one step.
func (s State) Next() []State { return append([]State(nil), transitions[s]...) }

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, x := range States {
		if x == s {
			return true
		}
	}
	return false
}

// Terminal reports whether nothing more happens to a request in state s.
func (s State) Terminal() bool { return s.Valid() && len(transitions[s]) == 0 }

// Done reports whether the request in state s needs nothing more before
// its key's life: terminal, or delivered (whose key may still be revoked
// one day, by a request of its own).
func (s State) Done() bool { return s.Terminal() || s == StateDelivered }

func (s State) String() string { return string(s) }
