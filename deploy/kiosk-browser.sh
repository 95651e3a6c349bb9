#!/bin/sh
# Boot a Raspberry Pi OS desktop into the kiosk page: wait for the daemon, then Chromium in
# kiosk mode on http://127.0.0.1:8080/, started again if it ever exits. Run from the desktop
# session's autostart (labwc, wayfire or LXDE; see docs/deploy.md) or from
# deploy/kiosk-browser.service (a systemd user unit).
#   MPOX_EDGE_URL   page to open (default http://127.0.0.1:8080/; ?lang=fr for French)
#   CHROMIUM        browser binary (default: chromium, else chromium-browser)
set -u
URL="${MPOX_EDGE_URL:-http://127.0.0.1:8080/}"
BROWSER="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || echo chromium)}"
HEALTH="${URL%/}"
HEALTH="${HEALTH%%\?*}"
HEALTH="${HEALTH%/}/healthz"

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

wait_for_daemon() {
    # up to 5 minutes: the first start of mpox-edge measures the backends
    i=0
    while [ "$i" -lt 300 ]; do
        if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "$HEALTH" 2>/dev/null; then
            return 0
        fi
        i=$((i + 1))
        sleep 1
    done
    echo "kiosk-browser: $HEALTH did not answer; opening the page anyway" >&2
}

xset s off -dpms 2>/dev/null || true # X11 only: no screen blanking (labwc: see docs/deploy.md)

while :; do
    wait_for_daemon
    # --incognito: no profile, no cache, no session restore; the page stores nothing either.
    "$BROWSER" --kiosk --incognito --noerrdialogs --disable-infobars --no-first-run \
        --disable-session-crashed-bubble --disable-features=Translate,MediaRouter \
        --disable-background-networking --disable-component-update --disable-sync \
        --check-for-update-interval=31536000 --password-store=basic \
        --overscroll-history-navigation=0 --disable-pinch \
        "$URL"
    echo "kiosk-browser: $BROWSER exited ($?); starting it again in 3 s" >&2
    sleep 3
done
