package keydesk

import "errors"

var (
	// ErrNotFound: no record with that ID.
	ErrNotFound = errors.New("keydesk: not found")
	// ErrConflict: the record changed since it was read (another reviewer or
	// worker won the race). Read it again and decide anew.
	ErrConflict = errors.New("keydesk: conflict: the record was changed by someone else")
	// ErrInvalidTransition: the state table has no such move.
	ErrInvalidTransition = errors.New("keydesk: invalid state transition")
)

// TransitionError reports a move that the state table forbids, or a record
// that is no longer in the state the caller expected.
type TransitionError struct {
	ID       string
	From, To State
	Actual   State // the record's state, when it differs from From
}

func (e *TransitionError) Error() string {
	if e.Actual != "" && e.Actual != e.From {
		return "request " + e.ID + " is " + string(e.Actual) + ", not " + string(e.From) + ": cannot move it to " + string(e.To)
	}
	return "request " + e.ID + ": no transition from " + string(e.From) + " to " + string(e.To)
}

func (e *TransitionError) Is(target error) bool {
	if target == ErrInvalidTransition {
		return true
	}
	// A record found in another state than expected lost a race.
	return target == ErrConflict && e.Actual != "" && e.Actual != e.From
}

// Temporary reports whether err says that the same call may succeed later
// unchanged: some error in its chain has a Temporary method that says so
// (the API client's, the SMTP sender's). An error that says nothing is not
// temporary. It is the one place failures are classed as worth a retry;
// each package keeps only the finer distinctions its callers act on.
func Temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
