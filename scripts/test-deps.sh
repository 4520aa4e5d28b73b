#!/usr/bin/env bash
# Installs what the tests need on a Debian machine, and nothing that is
# already there: redis-server (Debian's package), chromium for the browser
# test, and the pinned MinIO server built with `go install` into
# $WXACODE_TOOLS (default ~/.cache/wxacode/bin), where internal/testenv
# finds it. Safe to run again: a second run takes well under a second.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TOOLS=${WXACODE_TOOLS:-$HOME/.cache/wxacode/bin}

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-deps: installing ${missing[*]} with apt-get" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$TOOLS"
if [ ! -x "$TOOLS/minio" ] || [ "$(cat "$TOOLS/minio.version" 2>/dev/null)" != "$MINIO_VERSION" ]; then
  echo "test-deps: building minio@$MINIO_VERSION into $TOOLS (about 5 minutes the first time)" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install "github.com/minio/minio@$MINIO_VERSION"
  mv "$tmp/minio" "$TOOLS/minio"
  rmdir "$tmp"
  echo "$MINIO_VERSION" > "$TOOLS/minio.version"
fi
