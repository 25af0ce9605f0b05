package fake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// The admin endpoints let a test in another process steer the simulator.
// They carry no secret: keys show their metadata only.
//
//	GET  /_fake/faults          the faults in force
//	POST /_fake/faults          set faults: any of {"fail_next": 3, "fail_status": 503,
//	                            "latency": "20ms", "rate_limit": 50, "drop_after_create": 1,
//	                            "fail_after_create": 1, "fail_after_status": 500,
//	                            "list_envelope": "data", "clear": true}
//	GET  /_fake/keys?account=ID every key of the account (all accounts without it)
//	GET  /_fake/stats           the counters
func (s *Server) adminRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /_fake/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	m.HandleFunc("POST /_fake/faults", s.postFaults)
	m.HandleFunc("GET /_fake/keys", func(w http.ResponseWriter, r *http.Request) {
		if a := r.URL.Query().Get("account"); a != "" {
			writeJSON(w, http.StatusOK, s.Keys(a))
			return
		}
		out := []KeyInfo{}
		for _, a := range s.accountIDs() {
			out = append(out, s.Keys(a)...)
		}
		writeJSON(w, http.StatusOK, out)
	})
	m.HandleFunc("GET /_fake/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
}

func (s *Server) accountIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for a := range s.accounts {
		ids = append(ids, a)
	}
	slices.Sort(ids)
	return ids
}

// FaultsRequest is the body of POST /_fake/faults; absent members leave
// their fault as it is, and Clear first turns every fault off.
type FaultsRequest struct {
	Clear           bool     `json:"clear,omitempty"`
	FailNext        *int     `json:"fail_next,omitempty"`
	FailStatus      int      `json:"fail_status,omitempty"`
	FailMethod      string   `json:"fail_method,omitempty"` // with fail_next: only POST, GET or DELETE
	Latency         *string  `json:"latency,omitempty"`
	RateLimit       *float64 `json:"rate_limit,omitempty"`
	DropAfterCreate *int     `json:"drop_after_create,omitempty"`
	FailAfterCreate *int     `json:"fail_after_create,omitempty"`
	FailAfterStatus int      `json:"fail_after_status,omitempty"`
	ListEnvelope    *string  `json:"list_envelope,omitempty"`
}

func (s *Server) postFaults(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body could not be read")
		return
	}
	var req FaultsRequest
	if err := json.Unmarshal(b, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "not a faults object: "+err.Error())
		return
	}
	if err := s.Apply(req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_fault", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}

// Apply sets the faults a FaultsRequest names, after checking them all.
func (s *Server) Apply(req FaultsRequest) error {
	var lat time.Duration
	if req.Latency != nil {
		d, err := time.ParseDuration(*req.Latency)
		if err != nil || d < 0 || d > time.Minute {
			return fmt.Errorf("latency %q: want a duration such as 20ms, at most 1m", *req.Latency)
		}
		lat = d
	}
	for _, st := range []int{req.FailStatus, req.FailAfterStatus} {
		if st != 0 && (st < 400 || st > 599) {
			return fmt.Errorf("status %d: want a 4xx or 5xx status", st)
		}
	}
	switch req.FailMethod {
	case "", http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		return fmt.Errorf("fail_method %q: want POST, GET or DELETE", req.FailMethod)
	}
	if req.RateLimit != nil && (*req.RateLimit < 0 || *req.RateLimit > 1e6) {
		return fmt.Errorf("rate_limit %v: want 0 (off) to 1000000 requests per second", *req.RateLimit)
	}
	if req.Clear {
		s.ClearFaults()
	}
	if req.FailNext != nil {
		s.FailNextOf(req.FailMethod, *req.FailNext, req.FailStatus)
	}
	if req.Latency != nil {
		s.Latency(lat)
	}
	if req.RateLimit != nil {
		s.RateLimit(*req.RateLimit)
	}
	if req.DropAfterCreate != nil {
		s.DropAfterCreate(*req.DropAfterCreate)
	}
	if req.FailAfterCreate != nil {
		s.FailAfterCreate(*req.FailAfterCreate, req.FailAfterStatus)
	}
	if req.ListEnvelope != nil {
		s.SetListEnvelope(*req.ListEnvelope)
	}
	return nil
}
