package batch

import "github.com/buildmarkets/keydesk"

// Clock is the time source of the schedule and of retry back-offs.
type Clock = keydesk.Clock

// RealClock is the wall clock.
var RealClock = keydesk.RealClock
