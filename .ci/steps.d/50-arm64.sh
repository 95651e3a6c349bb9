#!/usr/bin/env bash
# The device install proven on arm64 under emulation (scripts/arm64_check.sh): the wheel built
# from this checkout, installed from the package index into a Bookworm arm64 venv (and the
# Raspberry Pi OS --system-site-packages branch), bench + eval under QEMU_CPU=cortex-a72 and
# cortex-a76, predictions compared with x86. The userland is cached in
# /var/cache/mpox-edge/arm64-bookworm (outside the clone): a warm run takes minutes, the first
# one also builds the userland. Emulated timings are not device figures and are not reported.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${MPOX_ARM64_SKIP:-0}" = 1 ]; then
    echo "50-arm64: skipped (MPOX_ARM64_SKIP=1)"
    exit 0
fi
exec timeout 2400 bash scripts/arm64_check.sh
