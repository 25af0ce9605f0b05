# keydesk: the README's commands, and the checks CI runs.
GO ?= go

.PHONY: test check fuzz bench chaos demo build

## test: the whole suite, race detector on, in random order, then the demo end to end.
test:
	$(GO) test -race -shuffle=on -timeout 20m ./...
	$(GO) run ./cmd/keydesk demo --once

## check: vet and static analysis.
check:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## fuzz: run every fuzz target in the tree for a while (FUZZTIME=30s each).
## The targets are found, not listed: a new one is never left out.
FUZZTIME ?= 30s
FUZZ_PKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' .)))
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

## bench: Go benchmarks and the ratio scripts of bench/.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./bench/run

## chaos: the whole-binary chaos test at length (make test runs a bounded form);
## CHAOS_SEED=N replays a run's decisions.
CHAOS_SEED ?= 0
chaos:
	$(GO) test ./cmd/keydesk -run '^TestChaos$$' -count=1 -v -timeout 60m -chaos.long -chaos.seed $(CHAOS_SEED)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o keydesk ./cmd/keydesk

demo:
	$(GO) run ./cmd/keydesk demo
