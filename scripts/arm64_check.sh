#!/usr/bin/env bash
# Prove the device install on arm64 without a device: a Debian Bookworm arm64 userland
# (debootstrap + a static qemu-aarch64 through binfmt_misc), the wheel built from this
# checkout installed into a venv there from the package index, then `mpox-edge bench` and
# `mpox-edge eval` on a handful of bundled images under QEMU_CPU=cortex-a72 (Pi 4) and
# cortex-a76 (Pi 5). Predictions must match the x86 run of the same commands: same top-1,
# probabilities within 1e-4 (fp32) / the int8 tolerance below. Also the Raspberry Pi OS branch
# of deploy/install.sh: a --system-site-packages venv on Bookworm's apt numpy (1.24.2), where
# pip resolves opencv-python-headless 4.11 instead of 4.14.
#
#   sudo scripts/arm64_check.sh              # build or reuse the userland, run the check
#   sudo scripts/arm64_check.sh --rebuild    # throw the cached userland away first
#   sudo scripts/arm64_check.sh --keep       # keep the per-run work dir (JSON) for a look
#
# Latencies measured here are EMULATED (qemu translates every instruction; fp32 runs about
# 1000x slower than natively): they say nothing about a Pi and are never reported as device
# figures. Only correctness is checked.
#
# Environment: MPOX_ARM64_CACHE (default /var/cache/mpox-edge/arm64-bookworm, outside the
# checkout so a fresh clone in CI finds it warm), DEBIAN_MIRROR, MPOX_ARM64_PI=0 to skip the
# Pi branch, MPOX_ARM64_BENCH_FP32=1 to add the slow fp32 bench, MPOX_ARM64_CPUS (default "cortex-a72 cortex-a76"), PYTHON (host python for the
# x86 reference and the wheel build).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MPOX_ARM64_CACHE:-/var/cache/mpox-edge/arm64-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CPUS=${MPOX_ARM64_CPUS:-cortex-a72 cortex-a76}
PYTHON=${PYTHON:-python3}
PI=${MPOX_ARM64_PI:-1}
REBUILD=0
KEEP=0
# The userland recipe: change any of these and the cache key changes, so the next run builds
# a new userland instead of reusing a stale one.
SUITE=bookworm
QEMU_SUITE=trixie # Bookworm's qemu 7.2 passes the host's x86 /proc/cpuinfo through and
# `import onnxruntime` dies with SIGSEGV; trixie's qemu 10 (a static binary) emulates an ARM one.
INCLUDE=python3,python3-venv,python3-pip,python3-numpy,ca-certificates,libstdc++6,libgomp1
RECIPE_VERSION=1

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "arm64_check: $*" >&2; exit 1; }
say() { echo "== arm64: $*"; }
for arg in "$@"; do
    case "$arg" in
        --rebuild) REBUILD=1 ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, binfmt_misc): sudo $0"
[ "$(uname -m)" = x86_64 ] || die "runs on an x86-64 host (this is $(uname -m))"
for tool in debootstrap update-binfmts chroot; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap binfmt-support"
done
T0=$(date +%s)
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another arm64_check holds $CACHE/.lock"

# -- qemu: the static qemu-aarch64 from trixie's qemu-user package -----------------------------
QEMU_DIR="$CACHE/qemu-$QEMU_SUITE"
QEMU="$QEMU_DIR/qemu-aarch64"
if [ ! -x "$QEMU" ]; then
    say "fetching qemu-user from Debian $QEMU_SUITE (apt-get download, dpkg -x)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial"
    echo "deb $MIRROR $QEMU_SUITE main" >"$tmp/sources.list"
    aptopts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$tmp/lists" -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1)
    apt-get "${aptopts[@]}" update -qq
    (cd "$tmp" && apt-get "${aptopts[@]}" download "qemu-user/$QEMU_SUITE" 2>&1 | grep -v unsandboxed || true)
    deb=$(ls "$tmp"/qemu-user_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || die "could not download qemu-user from $MIRROR $QEMU_SUITE"
    dpkg -x "$deb" "$tmp/x"
    mkdir -p "$QEMU_DIR"
    install -m 0755 "$tmp/x/usr/bin/qemu-aarch64" "$QEMU.new"
    dpkg-deb -f "$deb" Version >"$QEMU_DIR/version"
    mv "$QEMU.new" "$QEMU"
    rm -rf "$tmp"
fi
QEMU_VERSION=$(cat "$QEMU_DIR/version")
file -b "$QEMU" 2>/dev/null | grep -q static || die "$QEMU is not a static binary"

# -- binfmt: aarch64 ELF -> our qemu, F flag (the kernel opens it now, so chroots need no copy)
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
FMT=mpox-edge-aarch64
if ! grep -qs "interpreter $QEMU" "/proc/sys/fs/binfmt_misc/$FMT"; then
    update-binfmts --package mpox-edge --remove "$FMT" "$QEMU" >/dev/null 2>&1 || true
    [ -e "/proc/sys/fs/binfmt_misc/$FMT" ] && echo -1 >"/proc/sys/fs/binfmt_misc/$FMT"
    say "registering $FMT with update-binfmts"
    update-binfmts --package mpox-edge --install "$FMT" "$QEMU" \
        --magic '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00' \
        --mask '\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff' \
        --credentials yes --fix-binary yes
fi
# Another aarch64 handler (e.g. Bookworm's own qemu-user-static) registered later would win.
for f in /proc/sys/fs/binfmt_misc/*aarch64*; do
    [ "$f" = "/proc/sys/fs/binfmt_misc/$FMT" ] && continue
    grep -qs '^enabled' "$f" && say "note: $f is also enabled; $FMT registered last wins"
done

# Never rm -rf a userland with /dev or /proc bind-mounted into it (a crashed earlier run):
# unmount everything below it first, and stay on one file system anyway.
unmount_below() {
    local m
    for m in $(awk -v r="$1/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" || true
    done
}
remove_tree() {
    [ -e "$1" ] || return 0
    unmount_below "$1"
    if awk -v r="$1/" 'index($2, r) == 1 {found=1} END {exit !found}' /proc/mounts; then
        die "$1 still has mounts below it; not removing it"
    fi
    rm -rf --one-file-system "$1"
}

# -- the userland, cached by recipe ----------------------------------------------------------
KEY=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$MIRROR" "$INCLUDE" "$QEMU_VERSION" | sha256sum | cut -c1-12)
ROOT="$CACHE/rootfs-$KEY"
[ "$REBUILD" = 1 ] && remove_tree "$ROOT"
if [ ! -e "$ROOT/.complete" ]; then
    remove_tree "$ROOT"
    remove_tree "$ROOT.tmp"
    say "building Debian $SUITE arm64 ($INCLUDE) in $ROOT (about 5 min)"
    t=$(date +%s)
    debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT.tmp" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    rm -rf "$ROOT.tmp/var/cache/apt/archives/"*.deb
    touch "$ROOT.tmp/.complete"
    mv "$ROOT.tmp" "$ROOT"
    say "userland built in $(($(date +%s) - t)) s"
    for old in "$CACHE"/rootfs-*; do [ "$old" = "$ROOT" ] || remove_tree "$old"; done
else
    say "reusing cached userland $ROOT"
fi

# -- a run: mounts, a work dir inside the userland, cleanup on any exit ----------------------
RUN_ID=run-$$
WORK="$ROOT/work/$RUN_ID"
HOSTWORK=$(mktemp -d)
cleanup() {
    unmount_below "$ROOT"
    if [ "$KEEP" = 1 ]; then say "kept $WORK and $HOSTWORK"; else
        rm -rf --one-file-system "$WORK" "$HOSTWORK"; fi
}
trap cleanup EXIT
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys"
mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
mountpoint -q "$ROOT/dev/pts" || mount --bind /dev/pts "$ROOT/dev/pts"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host's CA bundle (an HTTPS proxy's own CA, where there is one) so pip in the userland
# trusts the same index the host does; proxies pass through too.
CA_ENV=()
for ca in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$ca" ] && [ -f "$ca" ]; then
        cp -L "$ca" "$ROOT/etc/ssl/certs/mpox-edge-host-ca.crt"
        CA_ENV=(PIP_CERT=/etc/ssl/certs/mpox-edge-host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/mpox-edge-host-ca.crt)
        break
    fi
done
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL; do
    [ -n "${!v:-}" ] && CA_ENV+=("$v=${!v}")
done
mkdir -p "$WORK"
# pip --no-compile below: byte-compiling numpy/OpenCV/ORT under emulation costs minutes and
# proves nothing; Python compiles what it imports.
in_arm() { # CPU, then a command run by bash inside the userland
    local cpu=$1
    shift
    chroot "$ROOT" /usr/bin/env -i "${CA_ENV[@]}" QEMU_CPU="$cpu" HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
        LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off MPOX_EDGE_NO_PROGRESS=1 \
        /bin/bash -euo pipefail -c "$*"
}
[ "$(in_arm cortex-a72 uname -m)" = aarch64 ] || die "the userland does not run as aarch64"

# -- the wheel, built from the checkout --------------------------------------------------------
say "building the wheel from $SRC"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" "$SRC" >/dev/null
WHEEL=$(cd "$WORK/dist" && ls mpox_edge-*.whl | head -1)
[ -n "$WHEEL" ] || die "no wheel built"

# -- a handful of bundled images, 3 per class ---------------------------------------------------
HELDOUT="$SRC/edge/data/heldout"
for d in "$HELDOUT"/*/; do
    c=$(basename "$d")
    mkdir -p "$WORK/images/$c"
    find "$d" -maxdepth 1 -type f -name '*.webp' | sort | head -3 | xargs -r cp -t "$WORK/images/$c"
done
N_IMG=$(find "$WORK/images" -type f | wc -l)

# -- the x86 reference --------------------------------------------------------------------------
say "x86 reference (eval on $N_IMG images, fp32 and int8)"
mkdir -p "$HOSTWORK/x86"
for prec in fp32 int8; do
    "$PYTHON" -m mpox_edge.edge.cli eval --backend onnxruntime --precision "$prec" --threads 2 \
        --data "$WORK/images" --json "$HOSTWORK/x86/eval-$prec.json" >/dev/null
done

# -- arm64: the wheel into a plain venv from the package index ----------------------------------
check() { # label, JSON dir
    "$PYTHON" "$SRC/scripts/arm64_compare.py" --label "$1" "$HOSTWORK/x86" "$2"
}
run_suite() { # CPU, venv, label, bench precisions
    local cpu=$1 venv=$2 label=$3 bench=$4 out="/work/$RUN_ID/out-$3"
    in_arm "$cpu" "mkdir -p $out"
    for prec in fp32 int8; do
        in_arm "$cpu" "$venv/bin/mpox-edge eval --backend onnxruntime --precision $prec \
            --threads 2 --data /work/$RUN_ID/images --json $out/eval-$prec.json >/dev/null"
    done
    for prec in $bench; do
        t=$(date +%s)
        in_arm "$cpu" "$venv/bin/mpox-edge bench --backend onnxruntime --precision $prec \
            --runs 20 --warmup 2 --threads 2 --data /work/$RUN_ID/images --json $out/bench-$prec.json \
            >/dev/null"
        say "$label: bench $prec ran ($(($(date +%s) - t)) s wall, EMULATED: not a device figure)"
    done
    check "$label" "$ROOT$out"
}

say "venv + pip install $WHEEL (numpy, OpenCV, ONNX Runtime aarch64 wheels from the index)"
t=$(date +%s)
in_arm cortex-a72 "python3 -m venv /work/$RUN_ID/venv && /work/$RUN_ID/venv/bin/pip install -q --no-compile \
    /work/$RUN_ID/dist/$WHEEL'[cpu]' && /work/$RUN_ID/venv/bin/mpox-edge --help >/dev/null"
say "installed in $(($(date +%s) - t)) s: $(in_arm cortex-a72 "/work/$RUN_ID/venv/bin/pip list 2>/dev/null" \
    | grep -iE '^(numpy|onnxruntime|opencv-python-headless) ' | tr -s ' ' | paste -sd, -)"
# bench fp32 is the slow part under emulation (about 1000x native: 18 min here under load,
# too long for CI), so by default bench runs int8 on every CPU model and fp32 is checked by
# eval's per-image probabilities; MPOX_ARM64_BENCH_FP32=1 adds the fp32 bench on the first.
first=1
for cpu in $CPUS; do
    if [ "$first" = 1 ] && [ "${MPOX_ARM64_BENCH_FP32:-0}" = 1 ]; then bench="fp32 int8"; else bench="int8"; fi
    first=0
    run_suite "$cpu" "/work/$RUN_ID/venv" "venv-$cpu" "$bench"
done

# -- the Raspberry Pi OS branch: --system-site-packages on the apt numpy ------------------------
if [ "$PI" = 1 ]; then
    SYS_NUMPY=$(in_arm cortex-a72 "python3 -c 'import numpy; print(numpy.__version__)'")
    say "Pi branch: --system-site-packages venv, numpy==$SYS_NUMPY kept (as deploy/install.sh does)"
    in_arm cortex-a72 "python3 -m venv --system-site-packages /work/$RUN_ID/pivenv && \
        echo numpy==$SYS_NUMPY >/work/$RUN_ID/pi-constraints.txt && \
        /work/$RUN_ID/pivenv/bin/pip install -q --no-compile -c /work/$RUN_ID/pi-constraints.txt \
        /work/$RUN_ID/dist/$WHEEL'[cpu]'"
    vers=$(in_arm cortex-a72 "/work/$RUN_ID/pivenv/bin/python -c 'import numpy, cv2, onnxruntime; \
        print(numpy.__version__, cv2.__version__, onnxruntime.__version__)'")
    say "Pi branch: numpy / OpenCV / ONNX Runtime = $vers"
    [ "$(echo "$vers" | cut -d' ' -f1)" = "$SYS_NUMPY" ] || die "the Pi venv replaced the apt numpy"
    run_suite cortex-a76 "/work/$RUN_ID/pivenv" "pi-venv-cortex-a76" "int8"
fi
say "passed in $(($(date +%s) - T0)) s (predictions match x86; emulated timings are not device figures)"
