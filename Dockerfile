# syntax=docker/dockerfile:1
#
# wxacode: one static binary on a distroless, non-root base.
#
#   docker build -t wxacode .
#   docker run --rm wxacode --help
#
# The image's entrypoint is the binary: the container's command is a wxacode
# command line (worker, serve, enqueue ..., status ..., simulate).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a change of source does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /wxacode ./cmd/wxacode
# An empty folder for file:// storage, handed to the non-root user below.
RUN mkdir -p /out/data

# distroless/static: CA certificates (HTTPS to WeChat and S3), tzdata and
# /etc/passwd with the user nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /wxacode /wxacode
COPY --from=build --chown=65532:65532 /out/data /data
# The default STORAGE_URL, file://./wxacodes, lands in /data/wxacodes: mount
# a volume on /data to keep the codes (or set STORAGE_URL=s3://...).
WORKDIR /data
USER 65532:65532
# wxacode serve --addr 0.0.0.0:8080 (the dashboard); workers serve /metrics
# and /healthz on the port given with --metrics-addr (9100 in the examples).
EXPOSE 8080
ENTRYPOINT ["/wxacode"]
CMD ["--help"]
