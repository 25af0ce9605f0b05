# keydesk: the README's commands, and the checks CI runs.
GO ?= go
DOCKER ?= docker

# The version stamped into the binary (keydesk version) and the image tag:
# the nearest tag, commits since, and -dirty for uncommitted changes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS = -X main.version=$(VERSION)
# The image's name: IMAGE=registry.example.com/team/keydesk make image push
IMAGE ?= keydesk

.PHONY: test check fuzz bench chaos demo build image push

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

## build: a static binary ./keydesk, its version stamped.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o keydesk ./cmd/keydesk

## image: the container image of deploy/Dockerfile, as IMAGE:VERSION, its
## version stamped (compose builds the same with VERSION in its environment).
image:
	$(DOCKER) build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

## push: push IMAGE:VERSION to the registry IMAGE names.
push: image
	$(DOCKER) push $(IMAGE):$(VERSION)

demo:
	$(GO) run ./cmd/keydesk demo
