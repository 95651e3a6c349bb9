"""deploy/install.sh under a fake root with stubbed system commands.

Every command that would change the machine (apt-get, useradd, systemctl, pip...) is a stub
on PATH that logs its arguments and keeps a little state (installed packages, the user, the
unit's enabled/active flags); the venv is made by a fake python. What is real: the script's
own logic, its files under the fake root, the undo log and the rollback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "install.sh"

STUB = r"""#!/bin/bash
# generic stub: log the call; fail when it matches $FAIL_AT; keep state in $STATE
me=$(basename "$0")
line="$me $*"
echo "$line" >> "$LOG"
if [ -n "${FAIL_AT:-}" ] && [[ "$line" == *"$FAIL_AT"* ]]; then
  echo "stub: $me failed" >&2; exit 1
fi
case "$me" in
  id)
    case "$1" in
      -u) echo 0 ;;
      -nG) echo "mpox-edge $(cat "$STATE/groups" 2>/dev/null)" ;;
      *) [ -e "$STATE/user" ] || exit 1 ;;
    esac ;;
  useradd) touch "$STATE/user" ;;
  userdel) rm -f "$STATE/user" "$STATE/groups" ;;
  usermod) echo video > "$STATE/groups" ;;
  gpasswd) rm -f "$STATE/groups" ;;
  dpkg) [ -e "$STATE/apt-${@: -1}" ] || exit 1 ;;
  apt-get)
    [ "$1" = install ] && for p in "$@"; do
      case "$p" in -*|install) ;; *) touch "$STATE/apt-$p" ;; esac
    done
    [ "$1" = remove ] && for p in "$@"; do rm -f "$STATE/apt-$p"; done
    exit 0 ;;
  uname) echo aarch64 ;;
  systemctl)
    case "$1" in
      is-enabled) [ -e "$STATE/enabled" ] || exit 1 ;;
      is-active) [ -e "$STATE/active" ] || exit 1 ;;
      enable) touch "$STATE/enabled" ;;
      disable) rm -f "$STATE/enabled" ;;
      restart) touch "$STATE/active" ;;
      stop) rm -f "$STATE/active" ;;
    esac ;;
  python3)
    case "$1" in
      -c) case "$2" in *numpy*) echo 1.24.2 ;; esac ;;
      -m)
        if [ "$2" = venv ]; then
          d="${@: -1}"; mkdir -p "$d/bin"
          for n in python mpox-edge; do
            printf '#!/bin/bash\nexec "%s" "$@"\n' "$STUBS/venv-$n" > "$d/bin/$n"
            chmod +x "$d/bin/$n"
          done
        fi ;;
    esac ;;
esac
exit 0
"""

COMMANDS = (
    "id useradd userdel usermod gpasswd dpkg apt-get uname systemctl systemd-analyze runuser "
    "chown python3 venv-python venv-mpox-edge"
).split()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "_stub").write_text(STUB)
    (stubs / "_stub").chmod(0o755)
    for c in COMMANDS:
        (stubs / c).symlink_to(stubs / "_stub")
    # runuser -u USER -- CMD...: run CMD (the venv's mpox-edge stub) so its failure counts
    (stubs / "runuser").unlink()
    (stubs / "runuser").write_text('#!/bin/bash\necho "runuser $*" >> "$LOG"\nshift 3\nexec "$@"\n')
    (stubs / "runuser").chmod(0o755)
    (tmp_path / "state").mkdir()
    return {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LOG": str(tmp_path / "log"),
        "STATE": str(tmp_path / "state"),
        "STUBS": str(stubs),
        "PYTHON": "python3",
        "PREFIX": str(tmp_path / "opt"),
        "MPOX_EDGE_ETC": str(tmp_path / "etc"),
        "MPOX_EDGE_UNIT_DIR": str(tmp_path / "systemd"),
        "MPOX_EDGE_DEVICE": "pi",
    }


def install(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )


def log(env: dict[str, str]) -> list[str]:
    p = Path(env["LOG"])
    return p.read_text().splitlines() if p.exists() else []


def test_dry_run_prints_every_step_and_changes_nothing(env: dict[str, str]) -> None:
    r = install(env, "--dry-run")
    assert r.returncode == 0, r.stderr
    steps = [ln for ln in r.stdout.splitlines() if ln.startswith("+ ")]
    text = "\n".join(steps)
    for want in (
        "apt-get install",
        "python3-picamera2",
        "useradd --system",
        "-m venv --system-site-packages",
        "[cpu]",
        "-c " + env["PREFIX"],  # the numpy constraint on the Pi
        "serve --config",
        "systemctl enable mpox-edge.service",
        "systemctl restart mpox-edge.service",
        "mpox-edge.service",
    ):
        assert want in text, f"{want!r} missing from the dry run:\n{text}"
    changed = {ln.split()[0] for ln in log(env)} - {"id", "dpkg", "uname", "python3"}
    assert not changed, f"dry run ran {changed}"
    assert not Path(env["PREFIX"]).exists() and not Path(env["MPOX_EDGE_ETC"]).exists()


def test_install_then_rerun_is_safe(env: dict[str, str]) -> None:
    r = install(env)
    assert r.returncode == 0, r.stdout + r.stderr
    venv = Path(env["PREFIX"]) / "venv"
    first = venv.resolve()
    assert venv.is_symlink() and (first / "bin" / "mpox-edge").exists()
    conf = Path(env["MPOX_EDGE_ETC"]) / "config.toml"
    assert 'uri = "csi://0"' in conf.read_text()
    unit = Path(env["MPOX_EDGE_UNIT_DIR"]) / "mpox-edge.service"
    assert f"{env['PREFIX']}/venv/bin/mpox-edge" in unit.read_text()
    calls = log(env)
    pip = [c for c in calls if "-m pip install" in c and "[cpu]" in c]
    assert pip and "numpy==" not in pip[0] and " -c " in pip[0], calls
    assert "1.24.2" in next(Path(env["PREFIX"]).glob("venv-*.constraints.txt")).read_text()
    conf.write_text(conf.read_text() + "# edited by the operator\n")

    Path(env["LOG"]).unlink()
    r = install(env)
    assert r.returncode == 0, r.stdout + r.stderr
    second = venv.resolve()
    assert second != first and not first.exists(), "the replaced venv is removed"
    assert conf.read_text().endswith("# edited by the operator\n"), "config never overwritten"
    calls = log(env)
    assert not [c for c in calls if c.startswith(("useradd", "apt-get"))], calls
    assert not list(Path(env["MPOX_EDGE_UNIT_DIR"]).glob("*.bak-*"))


def test_failed_first_install_undoes_everything(env: dict[str, str]) -> None:
    r = install(env, FAIL_AT="venv-mpox-edge serve")
    assert r.returncode != 0
    assert "undoing this run" in r.stderr
    prefix = Path(env["PREFIX"])
    assert not list(prefix.glob("venv*")), list(prefix.iterdir())
    assert not Path(env["MPOX_EDGE_ETC"]).exists()
    assert not (Path(env["MPOX_EDGE_UNIT_DIR"]) / "mpox-edge.service").exists()
    state = Path(env["STATE"])
    assert not (state / "user").exists() and not list(state.glob("apt-*"))
    assert not (state / "enabled").exists()


def test_failed_upgrade_keeps_the_working_install(env: dict[str, str]) -> None:
    assert install(env).returncode == 0
    venv = Path(env["PREFIX"]) / "venv"
    before = venv.resolve()
    unit = Path(env["MPOX_EDGE_UNIT_DIR"]) / "mpox-edge.service"
    unit.write_text(unit.read_text() + "# local tweak\n")
    r = install(env, FAIL_AT="systemctl restart")
    assert r.returncode != 0 and "undo:" in r.stderr
    assert venv.resolve() == before and (before / "bin" / "mpox-edge").exists()
    assert unit.read_text().endswith("# local tweak\n"), "the unit file is put back"
    assert len(list(Path(env["PREFIX"]).glob("venv-*[0-9]"))) == 1, "the new venv is removed"
    assert (Path(env["STATE"]) / "user").exists() and (Path(env["STATE"]) / "enabled").exists()


def test_jetson_ort_wheel_is_installed_and_no_cpu_extra(
    env: dict[str, str], tmp_path: Path
) -> None:
    wheel = tmp_path / "onnxruntime_gpu-1.20.0-cp310-cp310-linux_aarch64.whl"
    wheel.write_bytes(b"stand-in")
    r = install(env, MPOX_EDGE_DEVICE="jetson", ORT_WHEEL=str(wheel))
    assert r.returncode == 0, r.stdout + r.stderr
    pips = [c for c in log(env) if "-m pip install" in c]
    assert any(c.endswith(str(wheel)) for c in pips), pips
    mine = [c for c in pips if c.endswith(str(ROOT))]
    assert mine and "[cpu]" not in mine[0] and "[gpu]" not in mine[0], pips
    assert "--system-site-packages" not in "\n".join(log(env))


def test_bad_option_is_one_clear_line(env: dict[str, str]) -> None:
    r = install(env, "--ort", "cuda")
    assert r.returncode != 0 and "--ort takes cpu, gpu or none" in r.stderr
    r = install(env, MPOX_EDGE_PKG="/nonexistent/x.whl")
    assert r.returncode != 0 and "no such checkout or wheel" in r.stderr


def test_help_lists_dry_run(env: dict[str, str]) -> None:
    r = install(env, "--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "undo" in r.stdout
