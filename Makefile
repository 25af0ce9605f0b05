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

## fuzz: run each fuzz target for a while (FUZZTIME=30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./intake/parse -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./bmapi -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./delivery -run '^$$' -fuzz FuzzCompose -fuzztime $(FUZZTIME)

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
