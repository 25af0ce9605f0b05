package keydesk

import (
	"fmt"
	"strings"
)

// Environment is a Buildmarkets API environment.
type Environment string

const (
	Sandbox    Environment = "sandbox"
	Production Environment = "production"
)

// Environments lists every environment, in a stable order.
var Environments = []Environment{Sandbox, Production}

// InvalidEnvironmentError reports a word that names no environment.
type InvalidEnvironmentError struct {
	Input string
}

func (e *InvalidEnvironmentError) Error() string {
	if strings.TrimSpace(e.Input) == "" {
		return "environment is empty: write sandbox or production"
	}
	return fmt.Sprintf("%q is not an environment: write sandbox (also: test, testing) or production (also: prod, live)", e.Input)
}

// ParseEnvironment reads the words partners use for an environment. Only
// these are accepted: anything else ("staging", "uat") is an error, since
// guessing an environment could hand out a production key by mistake.
func ParseEnvironment(s string) (Environment, error) {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(s), "\"'`*_.")) {
	case "sandbox", "test", "testing":
		return Sandbox, nil
	case "production", "prod", "live":
		return Production, nil
	}
	return "", &InvalidEnvironmentError{Input: s}
}

// Valid reports whether e is one of the known environments.
func (e Environment) Valid() bool { return e == Sandbox || e == Production }

func (e Environment) String() string { return string(e) }
