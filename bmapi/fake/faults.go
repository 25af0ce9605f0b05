package fake

import (
	"net/http"
	"time"

	"golang.org/x/time/rate"
)

// faults are the failures the simulator injects. Guarded by Server.mu.
type faults struct {
	failNext        int
	failStatus      int
	failMethod      string // "": any request
	latency         time.Duration
	rateLimit       float64
	dropAfterCreate int
	failAfterCreate int
	failAfterStatus int
	listEnvelope    string
}

// Faults is the state of the injected faults, as the admin endpoint shows
// and takes it.
type Faults struct {
	FailNext        int     `json:"fail_next"`
	FailStatus      int     `json:"fail_status,omitempty"`
	FailMethod      string  `json:"fail_method,omitempty"`
	Latency         string  `json:"latency"`
	RateLimit       float64 `json:"rate_limit"`
	DropAfterCreate int     `json:"drop_after_create"`
	FailAfterCreate int     `json:"fail_after_create"`
	FailAfterStatus int     `json:"fail_after_status,omitempty"`
	ListEnvelope    string  `json:"list_envelope"`
}

// FailNext answers the next n API requests, whatever they are, with status
// (503 when 0) before authentication, as a proxy or a failing server
// would. A 429 carries Retry-After: 1.
func (s *Server) FailNext(n int, status int) { s.FailNextOf("", n, status) }

// FailNextOf is FailNext for the requests of one method only (POST,
// GET, DELETE; "" any): a test aims a fault at the create, the list or
// the revocation while the other calls go through.
func (s *Server) FailNextOf(method string, n int, status int) {
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.failNext, s.f.failStatus, s.f.failMethod = max(n, 0), status, method
}

// Latency delays every API request by d before it is handled.
func (s *Server) Latency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.latency = max(d, 0)
}

// RateLimit admits rps requests per second (with a burst of one second's
// worth) across all accounts, and answers the rest 429 with a Retry-After
// in whole seconds. 0 turns it off.
func (s *Server) RateLimit(rps float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.rateLimit = max(rps, 0)
	if rps <= 0 {
		s.limiter = nil
		return
	}
	s.limiter = rate.NewLimiter(rate.Limit(rps), max(1, int(rps)))
}

// DropAfterCreate makes the next n successful creations close the
// connection without an answer after the key is made: the caller cannot
// know that the key exists.
func (s *Server) DropAfterCreate(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.dropAfterCreate = max(n, 0)
}

// FailAfterCreate makes the next n successful creations answer status
// (500 when 0) after the key is made.
func (s *Server) FailAfterCreate(n int, status int) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.failAfterCreate, s.f.failAfterStatus = max(n, 0), status
}

// SetListEnvelope makes GET /v1/keys answer {"<name>": [...], "count": n}
// instead of a bare array; "" restores the bare array.
func (s *Server) SetListEnvelope(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.listEnvelope = name
}

// ClearFaults turns every fault off.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f = faults{}
	s.limiter = nil
}

// Faults returns the faults in force.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Faults{FailNext: s.f.failNext, FailStatus: s.f.failStatus, FailMethod: s.f.failMethod, Latency: s.f.latency.String(), RateLimit: s.f.rateLimit,
		DropAfterCreate: s.f.dropAfterCreate, FailAfterCreate: s.f.failAfterCreate, FailAfterStatus: s.f.failAfterStatus,
		ListEnvelope: s.f.listEnvelope}
}
