#!/usr/bin/env bash
# Install mpox-edge as a systemd service on Raspberry Pi OS (64-bit, Bookworm or later) or on
# an NVIDIA Jetson (JetPack 6; JetPack 5 ships Python 3.8, too old). Run from a checkout:
#
#   sudo deploy/install.sh --dry-run       # print every step, change nothing
#   sudo deploy/install.sh                 # install, enable and start
#   sudo deploy/install.sh --no-start      # install and enable; start after editing the config
#   sudo deploy/install.sh --openvino      # also install OpenVINO (x86 kiosks, Intel NPUs/GPUs)
#   sudo ORT_WHEEL=/path/onnxruntime_gpu-*.whl deploy/install.sh   # Jetson: CUDA/TensorRT ORT
#   sudo deploy/install.sh --ort none      # keep the ONNX Runtime build already in the venv
#   sudo MPOX_EDGE_PKG=dist/mpox_edge-0.1.0-py3-none-any.whl deploy/install.sh   # a built wheel
#
# What it does: apt packages; a system user "mpox-edge"; a fresh venv in /opt/mpox-edge/venv-*
# (on the Pi with --system-site-packages, so the apt-only picamera2 and the apt numpy are
# used), /opt/mpox-edge/venv pointing at it once it passed `serve --check`; the config
# /etc/mpox-edge/config.toml from deploy/config.example.toml (never overwritten); the unit.
# ONNX Runtime: the CPU build (extra [cpu]) unless ORT_WHEEL names another build or --ort none
# keeps one; mpox-edge itself never depends on a particular ORT package, so nothing replaces it.
# A failed step undoes what this run did (its undo log, in reverse); re-running is safe.
set -euo pipefail

PREFIX=${PREFIX:-/opt/mpox-edge}
ETC=${MPOX_EDGE_ETC:-/etc/mpox-edge}
UNIT_DIR=${MPOX_EDGE_UNIT_DIR:-/etc/systemd/system}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=${MPOX_EDGE_PKG:-$SRC} # a checkout or a built wheel (python3 -m pip wheel --no-deps -w dist .)
PYTHON=${PYTHON:-python3}
START=1
DRY=0
ORT=auto
EXTRAS=()

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-start) START=0 ;;
        --dry-run | -n) DRY=1 ;;
        --openvino) EXTRAS+=(openvino) ;;
        --ort) [ $# -ge 2 ] || die "--ort takes cpu, gpu or none"; ORT=$2; shift ;;
        --ort=*) ORT=${1#--ort=} ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
case "$ORT" in auto | cpu | gpu | none) ;; *) die "--ort takes cpu, gpu or none, not $ORT" ;; esac

# -- steps and the undo log -------------------------------------------------------------------
# run: print a step and (unless --dry-run) do it. undo: what reverts it, pushed once the step
# succeeded; on any failure the log is replayed newest first and the exit status kept.
UNDO=()
run() {
    echo "+ $*"
    [ "$DRY" = 1 ] || "$@"
}
undo() { [ "$DRY" = 1 ] || UNDO+=("$*"); }
rollback() {
    local rc=$?
    trap - EXIT
    if [ "$rc" -ne 0 ] && [ "${#UNDO[@]}" -gt 0 ]; then
        echo "install.sh: failed (exit $rc); undoing this run's ${#UNDO[@]} step(s)" >&2
        for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do
            echo "  undo: ${UNDO[$i]}" >&2
            eval "${UNDO[$i]}" || echo "  (undo step failed; continuing)" >&2
        done
    fi
    exit "$rc"
}
trap rollback EXIT

if [ "$DRY" = 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 (or --dry-run to see the steps)"
    command -v systemctl >/dev/null || die "systemd is required"
else
    say "dry run: nothing is changed; these are the steps"
fi

# -- which device ---------------------------------------------------------------------------
MODEL=$({ tr -d '\0' <"${MPOX_EDGE_DT_MODEL:-/proc/device-tree/model}"; } 2>/dev/null || true)
if [ -n "${MPOX_EDGE_DEVICE:-}" ]; then
    DEVICE=$MPOX_EDGE_DEVICE
elif [[ "$MODEL" == *"Raspberry Pi"* ]]; then
    DEVICE=pi
elif [ -f /etc/nv_tegra_release ] || [[ "$MODEL" == *"NVIDIA"* ]] || [[ "$MODEL" == *"Jetson"* ]]; then
    DEVICE=jetson
else
    DEVICE=generic
fi
say "device: $DEVICE${MODEL:+ ($MODEL)}"
if [ "$(uname -m)" != aarch64 ] && [ "$DEVICE" != generic ]; then
    why="a 64-bit OS is required (uname -m is $(uname -m)); use Raspberry Pi OS (64-bit)"
    [ "$DRY" = 1 ] && say "would stop here: $why" || die "$why"
fi
if [ "$ORT" = auto ]; then
    if [ -n "${ORT_WHEEL:-}" ]; then ORT=wheel; else ORT=cpu; fi
fi
[ "$ORT" = wheel ] && { [ -f "$ORT_WHEEL" ] || die "ORT_WHEEL=$ORT_WHEEL: no such file"; }
if [ "$ORT" = cpu ] || [ "$ORT" = gpu ]; then EXTRAS+=("$ORT"); fi
[ -e "$PKG" ] || die "MPOX_EDGE_PKG=$PKG: no such checkout or wheel"

# -- packages (only the missing ones; undo removes only those) -------------------------------
export DEBIAN_FRONTEND=noninteractive
APT=(python3-venv python3-pip)
[ "$DEVICE" = pi ] && APT+=(python3-picamera2) # picamera2 + libcamera bindings: apt only
MISSING=()
for p in "${APT[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || MISSING+=("$p"); done
if [ "${#MISSING[@]}" -gt 0 ]; then
    run apt-get update -q
    run apt-get install -y -q --no-install-recommends "${MISSING[@]}"
    undo apt-get remove -y -q "${MISSING[@]}"
else
    say "apt packages present: ${APT[*]}"
fi
if [ "$DRY" = 0 ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die \
        "$("$PYTHON" -V) is too old: mpox-edge needs Python >= 3.10 (JetPack 6, or set PYTHON=python3.10)"
fi

# -- user -------------------------------------------------------------------------------------
if ! id mpox-edge >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir /var/lib/mpox-edge --no-create-home \
        --shell /usr/sbin/nologin --comment "mpox-edge kiosk daemon" mpox-edge
    undo userdel mpox-edge
    run usermod -a -G video mpox-edge # the unit adds it too; this helps manual runs (sudo -u)
elif ! id -nG mpox-edge | tr ' ' '\n' | grep -qx video; then
    run usermod -a -G video mpox-edge
    undo gpasswd -d mpox-edge video
else
    say "user mpox-edge exists"
fi

# -- a new venv beside the running one; $PREFIX/venv switches to it at the end ---------------
STAMP=$(date +%Y%m%d%H%M%S)-$$
NEW="$PREFIX/venv-$STAMP"
VENV_OPTS=()
PIP=("$NEW/bin/python" -m pip install --progress-bar off)
run install -d "$PREFIX"
if [ "$DEVICE" = pi ]; then
    VENV_OPTS+=(--system-site-packages)
    # picamera2's compiled helpers (simplejpeg...) are built against the apt numpy: a pip
    # numpy in the venv would shadow it and break them, so keep the system's version. With
    # Bookworm's numpy 1.24, pip resolves opencv-python-headless 4.11 (4.12+ need numpy 2).
    SYS_NUMPY=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
    if [ -n "$SYS_NUMPY" ]; then
        CONSTRAINTS="$NEW.constraints.txt"
        [ "$DRY" = 1 ] || echo "numpy==$SYS_NUMPY" >"$CONSTRAINTS"
        echo "+ echo numpy==$SYS_NUMPY > $CONSTRAINTS"
        undo rm -f "$CONSTRAINTS"
        PIP+=(-c "$CONSTRAINTS")
    fi
fi
run "$PYTHON" -m venv "${VENV_OPTS[@]}" "$NEW"
undo rm -rf "$NEW"
run "${PIP[@]}" --upgrade pip
if [ "$ORT" = wheel ]; then
    say "ONNX Runtime from $ORT_WHEEL (kept: mpox-edge does not depend on a particular ORT build)"
    run "${PIP[@]}" "$ORT_WHEEL"
elif [ "$DEVICE" = jetson ] && [ "$ORT" = cpu ]; then
    say "note: PyPI's onnxruntime is CPU-only on Jetson; for CUDA/TensorRT re-run with"
    say "      ORT_WHEEL=<onnxruntime-gpu wheel for your JetPack> (NVIDIA's Jetson wheels)"
fi
SPEC=$PKG
if [ "${#EXTRAS[@]}" -gt 0 ]; then SPEC="$PKG[$(IFS=,; echo "${EXTRAS[*]}")]"; fi
say "installing mpox-edge from $SPEC"
run "${PIP[@]}" "$SPEC"
if [ "$DEVICE" = pi ]; then
    run "$NEW/bin/python" -c 'import picamera2' \
        || die "picamera2 is not importable from the venv; is python3-picamera2 installed?"
fi
run "$NEW/bin/python" -c 'import onnxruntime' \
    || die "no ONNX Runtime in the new venv: drop --ort none, or set ORT_WHEEL=<wheel>"

# -- config and unit --------------------------------------------------------------------------
if [ ! -d "$ETC" ]; then
    run install -d -m 0750 "$ETC"
    undo rm -rf "$ETC"
fi
run chown root:mpox-edge "$ETC"
CONF="$ETC/config.toml"
if [ ! -e "$CONF" ]; then
    URI="csi://0"
    [ "$DEVICE" = pi ] || URI="/dev/video0" # Jetson CSI cameras need GStreamer: use USB
    echo "+ sed 's#csi://0#$URI#' deploy/config.example.toml > $CONF"
    if [ "$DRY" = 0 ]; then
        sed "s#^uri = \"csi://0\"#uri = \"$URI\"#" "$SRC/deploy/config.example.toml" >"$CONF.new"
        chmod 0640 "$CONF.new"
        chown root:mpox-edge "$CONF.new"
        mv "$CONF.new" "$CONF"
    fi
    undo rm -f "$CONF"
    say "config $CONF (source $URI)"
else
    say "keeping the existing $CONF"
fi
UNIT="$UNIT_DIR/mpox-edge.service"
undo systemctl daemon-reload # runs last in an undo: after the unit file is put back
if [ -e "$UNIT" ]; then
    run cp -p "$UNIT" "$UNIT.bak-$STAMP"
    undo mv -f "$UNIT.bak-$STAMP" "$UNIT"
else
    undo rm -f "$UNIT"
fi
echo "+ sed 's#/opt/mpox-edge/venv#$PREFIX/venv#' deploy/mpox-edge.service > $UNIT"
if [ "$DRY" = 0 ]; then
    mkdir -p "$UNIT_DIR"
    sed "s#/opt/mpox-edge/venv#$PREFIX/venv#g" "$SRC/deploy/mpox-edge.service" >"$UNIT.new"
    chmod 0644 "$UNIT.new"
    mv "$UNIT.new" "$UNIT"
fi
run systemctl daemon-reload
if command -v systemd-analyze >/dev/null; then run systemd-analyze verify "$UNIT"; fi

say "checking the configuration with the new venv"
run runuser -u mpox-edge -- "$NEW/bin/mpox-edge" serve --config "$CONF" --check

# -- switch: $PREFIX/venv -> the new venv (atomic rename of a symlink) -------------------------
OLD=""
if [ -L "$PREFIX/venv" ]; then
    OLD=$(readlink "$PREFIX/venv")
    run ln -sfn "$NEW" "$PREFIX/venv.link-$STAMP"
    run mv -Tf "$PREFIX/venv.link-$STAMP" "$PREFIX/venv"
    undo ln -sfn "$OLD" "$PREFIX/venv"
elif [ -d "$PREFIX/venv" ]; then # a venv from an older install.sh: set aside, then removed
    OLD="$PREFIX/venv.old-$STAMP"
    run mv "$PREFIX/venv" "$OLD"
    undo "rm -f '$PREFIX/venv' && mv '$OLD' '$PREFIX/venv'"
    run ln -sfn "$NEW" "$PREFIX/venv"
else
    run ln -sfn "$NEW" "$PREFIX/venv"
    undo rm -f "$PREFIX/venv"
fi

WAS_ENABLED=0
WAS_ACTIVE=0
if [ "$DRY" = 0 ]; then
    systemctl is-enabled --quiet mpox-edge.service 2>/dev/null && WAS_ENABLED=1
    systemctl is-active --quiet mpox-edge.service 2>/dev/null && WAS_ACTIVE=1
fi
run systemctl enable mpox-edge.service
[ "$WAS_ENABLED" = 1 ] || undo systemctl disable mpox-edge.service
if [ "$START" = 1 ]; then
    if [ "$WAS_ACTIVE" = 1 ]; then undo systemctl restart mpox-edge.service; else
        undo systemctl stop mpox-edge.service; fi
    run systemctl restart mpox-edge.service
fi

# -- done: nothing more to undo; remove what the switch replaced -------------------------------
UNDO=()
for old in "$PREFIX"/venv-* "$PREFIX"/venv.old-*; do
    [ -e "$old" ] || continue
    case "$old" in "$NEW" | "$NEW".constraints.txt) continue ;; esac
    run rm -rf "$old"
done
[ -e "$UNIT.bak-$STAMP" ] && run rm -f "$UNIT.bak-$STAMP"
if [ "$DRY" = 1 ]; then
    say "dry run done: nothing was changed"
elif [ "$START" = 1 ]; then
    say "started: systemctl status mpox-edge; journalctl -u mpox-edge -f; curl localhost:8080/status"
else
    say "enabled; start with: sudo systemctl start mpox-edge"
fi
