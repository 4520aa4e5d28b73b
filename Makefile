# The test command is `make test`: it installs what the tests need (Redis,
# MinIO, Chromium) when missing, then runs every test with the race detector.
# The end-to-end package (cmd/wxacode) runs after the others, by itself: its
# tests measure calls as they arrive at the simulator (each app's share of
# its ceiling, every window), which other packages' tests running beside it
# on a small machine would blur.

GO ?= go

.PHONY: test test-deps build vet bench demo

test: test-deps vet
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v '/cmd/wxacode$$')
	$(GO) test -race -count=1 -timeout 15m ./cmd/wxacode

test-deps:
	./scripts/test-deps.sh

build:
	$(GO) build -o bin/wxacode ./cmd/wxacode

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet ./...

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

demo:
	$(GO) run ./cmd/wxacode demo
