#!/usr/bin/env bash
# Usage: scripts/stamp.sh EXTRA_KEY PATH...
# Prints one sha256 over EXTRA_KEY and the names + contents of all files under the
# given paths (missing paths are fine; they just don't contribute).
set -euo pipefail
key=$1; shift
{
  printf '%s\n' "$key"
  for p in "$@"; do
    [[ -e "$p" ]] || continue
    find "$p" \( -name __pycache__ -o -name build -o -name install -o -name log \) -prune -o -type f -print
  done | LC_ALL=C sort | while IFS= read -r f; do
    printf '%s  %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"
  done
} | sha256sum | cut -c1-64
