#!/usr/bin/env bash
# Install mpox-edge as a systemd service on Raspberry Pi OS (64-bit, Bookworm or later) or on
# an NVIDIA Jetson (JetPack 6; JetPack 5 ships Python 3.8, too old). Run from a checkout:
#
#   sudo deploy/install.sh                 # install, enable and start
#   sudo deploy/install.sh --no-start      # install and enable; start after editing the config
#   sudo deploy/install.sh --openvino      # also install OpenVINO (x86 kiosks, Intel NPUs/GPUs)
#   sudo ORT_WHEEL=/path/onnxruntime_gpu-*.whl deploy/install.sh   # Jetson: CUDA/TensorRT ORT
#
# What it does: apt packages; a system user "mpox-edge"; a venv in /opt/mpox-edge/venv (on the
# Pi with --system-site-packages, so the apt-only picamera2 is visible); /etc/mpox-edge/config.toml
# from deploy/config.example.toml (never overwritten); the unit in /etc/systemd/system.
set -euo pipefail

PREFIX=${PREFIX:-/opt/mpox-edge}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=${MPOX_EDGE_PKG:-$SRC}          # a checkout or a built wheel
PYTHON=${PYTHON:-python3}
START=1
EXTRAS=""

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

for arg in "$@"; do
    case "$arg" in
        --no-start) START=0 ;;
        --openvino) EXTRAS="[openvino]" ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
command -v systemctl >/dev/null || die "systemd is required"

# -- which device ---------------------------------------------------------------------------
MODEL=$(tr -d '\0' </proc/device-tree/model 2>/dev/null || true)
if [[ "$MODEL" == *"Raspberry Pi"* ]]; then
    DEVICE=pi
elif [ -f /etc/nv_tegra_release ] || [[ "$MODEL" == *"NVIDIA"* ]] || [[ "$MODEL" == *"Jetson"* ]]; then
    DEVICE=jetson
else
    DEVICE=generic
fi
say "device: $DEVICE${MODEL:+ ($MODEL)}"
[ "$(uname -m)" = aarch64 ] || [ "$DEVICE" = generic ] \
    || die "a 64-bit OS is required (uname -m is $(uname -m)); use Raspberry Pi OS (64-bit)"

# -- packages ---------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
APT=(python3-venv python3-pip)
[ "$DEVICE" = pi ] && APT+=(python3-picamera2)   # picamera2 + libcamera bindings: apt only
apt-get install -y -q --no-install-recommends "${APT[@]}"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die \
    "$("$PYTHON" -V) is too old: mpox-edge needs Python >= 3.10 (JetPack 6, or set PYTHON=python3.10)"

# -- user -------------------------------------------------------------------------------------
if ! id mpox-edge >/dev/null 2>&1; then
    say "creating system user mpox-edge"
    useradd --system --user-group --home-dir /var/lib/mpox-edge --no-create-home \
        --shell /usr/sbin/nologin --comment "mpox-edge kiosk daemon" mpox-edge
fi
usermod -a -G video mpox-edge   # the unit adds it too; this helps manual runs (sudo -u)

# -- venv -------------------------------------------------------------------------------------
VENV_OPTS=()
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
if [ "$DEVICE" = pi ]; then
    VENV_OPTS+=(--system-site-packages)
    # picamera2's compiled helpers (simplejpeg...) are built against the apt numpy: a pip
    # numpy in the venv would shadow it and break them, so keep the system's version.
    SYS_NUMPY=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
    [ -n "$SYS_NUMPY" ] && echo "numpy==$SYS_NUMPY" >"$CONSTRAINTS"
fi
say "venv in $PREFIX/venv ${VENV_OPTS[*]:-}"
mkdir -p "$PREFIX"
"$PYTHON" -m venv "${VENV_OPTS[@]}" "$PREFIX/venv"
PIP=("$PREFIX/venv/bin/pip" install --upgrade --progress-bar off -c "$CONSTRAINTS")
"${PIP[@]}" pip
"$PREFIX/venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || "${PIP[@]}" tomli   # config.toml reader on Python 3.10
if [ "$DEVICE" = jetson ] && [ -n "${ORT_WHEEL:-}" ]; then
    say "onnxruntime-gpu from $ORT_WHEEL"
    "${PIP[@]}" "$ORT_WHEEL"
elif [ "$DEVICE" = jetson ]; then
    say "note: PyPI's onnxruntime is CPU-only on Jetson; for CUDA/TensorRT re-run with"
    say "      ORT_WHEEL=<onnxruntime-gpu wheel for your JetPack> (NVIDIA's Jetson wheels)"
fi
say "installing mpox-edge from $PKG"
"${PIP[@]}" "$PKG$EXTRAS"
[ "$DEVICE" = pi ] && { "$PREFIX/venv/bin/python" -c 'import picamera2' \
    || die "picamera2 is not importable from the venv; is python3-picamera2 installed?"; }

# -- config and unit --------------------------------------------------------------------------
install -d -m 0750 -o root -g mpox-edge /etc/mpox-edge
if [ ! -e /etc/mpox-edge/config.toml ]; then
    URI="csi://0"
    [ "$DEVICE" = pi ] || URI="/dev/video0"   # Jetson CSI cameras need GStreamer: use USB
    sed "s#^uri = \"csi://0\"#uri = \"$URI\"#" "$SRC/deploy/config.example.toml" \
        | install -m 0640 -o root -g mpox-edge /dev/stdin /etc/mpox-edge/config.toml
    say "wrote /etc/mpox-edge/config.toml (source $URI)"
else
    say "keeping the existing /etc/mpox-edge/config.toml"
fi
sed "s#/opt/mpox-edge/venv#$PREFIX/venv#g" "$SRC/deploy/mpox-edge.service" \
    | install -m 0644 /dev/stdin /etc/systemd/system/mpox-edge.service
systemctl daemon-reload
command -v systemd-analyze >/dev/null && systemd-analyze verify /etc/systemd/system/mpox-edge.service

say "checking the configuration"
runuser -u mpox-edge -- "$PREFIX/venv/bin/mpox-edge" serve --config /etc/mpox-edge/config.toml --check

systemctl enable mpox-edge.service
if [ "$START" = 1 ]; then
    systemctl restart mpox-edge.service
    say "started: systemctl status mpox-edge; journalctl -u mpox-edge -f; curl localhost:8080/status"
else
    say "enabled; start with: sudo systemctl start mpox-edge"
fi
