#!/usr/bin/env bash
# buf-breaking.sh checks the working tree's protos for wire/JSON breaking changes
# against a git ref (default main). The ref's tree lacks .bin/proto-deps (it is
# generated, not committed), so the ref's protos are exported into a temporary
# workspace that gets the same third-party protos.
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-main}"
if ! git rev-parse --verify -q "$ref" >/dev/null || ! git cat-file -e "$ref:buf.yaml" 2>/dev/null; then
  echo "buf breaking: no $ref with protos to compare with"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git archive "$ref" buf.yaml proto | tar -x -C "$tmp"
mkdir -p "$tmp/.bin"
cp -r .bin/proto-deps "$tmp/.bin/proto-deps"
"${BUF:-$(command -v buf || echo .bin/buf)}" breaking --against "$tmp"
echo "buf breaking: no breaking changes against $ref"
