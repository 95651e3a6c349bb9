#!/usr/bin/env bash
# Type-check edge/, converters/ and calibration/ as the modules they are installed as
# (mpox_edge.edge, mpox_edge.converters, mpox_edge.calibration). pyproject maps those names
# onto the folders, which mypy cannot follow through an editable install, so a temporary
# tree of symlinks hands it the real files under their real names. Settings: [tool.mypy].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/mpox_edge"
for d in edge converters calibration; do
    ln -s "$root/$d" "$tmp/mpox_edge/$d"
done
cd "$tmp"
python3 -m mypy --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" \
    -p mpox_edge.edge -p mpox_edge.converters -p mpox_edge.calibration
