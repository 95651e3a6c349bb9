# Sourced by the scripts/*.sh entry points, after `set -euo pipefail`, with their "$@":
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh" "$@"
# --help prints the calling script's header comment and exits 0; any other leading option is
# one line and exit 2 (a caller parses its own options before sourcing this); sets `here`,
# the repository root.
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
if [[ "${1:-}" == -* ]]; then
    echo "$(basename "$0"): unknown option $1 (try --help)" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
