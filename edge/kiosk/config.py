"""The daemon's one TOML file, validated into dataclasses before anything starts.

Every problem is reported (all of them, one line each, naming the section and key), so an
operator fixing a kiosk over a slow SSH link does not play whack-a-mole. Unknown keys are
errors too: a typo such as ``refer_treshold`` must not silently keep the default.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import socket
import sys
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..model.selection import default_state_dir
from .fleetconfig import ModelsConfig, MqttConfig  # noqa: F401 - sections of Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

DEFAULT_PATH = Path("/etc/mpox-edge/config.toml")
DECISIONS = ("refer", "clear", "retake", "unsure")  # what the pipeline can answer
MAX_SIDE = 16384  # pixels: a frame size of 1e8 would be a 28 TB warm-up frame


@dataclass
class ModelConfig:
    dir: str = ""  # empty: the model shipped with the package
    backend: str = "auto"  # auto = measured fastest, cached in state_dir
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0  # 0: all cores
    warmup: int = 5  # untimed frames before READY=1
    # A sha256 mismatch anywhere in the model directory refuses it; true serves the intact
    # artifacts with a loud warning (log, /status "integrity", /metrics model_integrity_ok)
    allow_tampered: bool = False

    def check(self) -> list[str]:
        e = []
        from ..model.backends import REGISTRY  # the registry names them, not a list here

        if self.backend not in ("auto", *REGISTRY):
            e.append(f"backend must be auto or one of {', '.join(REGISTRY)}, not {self.backend!r}")
        if self.precision not in ("fp32", "int8"):
            e.append(f"precision must be fp32 or int8, not {self.precision!r}")
        if not 0 <= self.threads <= 256 or not 0 <= self.warmup <= 1000:
            e.append("threads must be 0..256 and warmup 0..1000")
        if self.dir and not Path(self.dir).is_dir():
            e.append(f"dir {self.dir!r} is not a directory")
        return e


@dataclass
class SourceConfig:
    uri: str = "csi://0"
    loop: bool = False  # file:// restarts at the end
    realtime: bool = False  # file:// plays at its own frame rate, dropping like a camera
    watch: bool = True  # dir:// waits for new images instead of ending
    width: int = 1280
    height: int = 720
    fps: int = 30
    mjpg: bool = True  # USB cameras: MJPG keeps 720p at 30 fps on USB 2
    # No more pixels than the model and the checks need: picamera2's ISP-scaled stream, the
    # smallest V4L2 mode >= 2x the model input, MJPEG decoded at 1/2-1/8 size (frames.py).
    downscale: bool = True
    read_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def check(self) -> list[str]:
        e = []
        if not self.uri:
            e.append("uri must not be empty")
        if not (0 <= self.width <= MAX_SIDE and 0 <= self.height <= MAX_SIDE):
            e.append(f"width and height must be 0..{MAX_SIDE} (0: the camera's default)")
        if not 0 <= self.fps <= 1000:
            e.append("fps must be 0..1000 (0: the camera's default)")
        if not 0 < self.read_timeout_s <= 600:
            e.append("read_timeout_s must be in (0, 600]")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s <= 3600:
            e.append("need 0 < backoff_initial_s <= backoff_max_s <= 3600")
        return e


@dataclass
class DecisionConfig:
    positive_class: str = ""  # empty: the manifest's positive_class (or its mpox class)
    # Smoothed positive probability that means "refer". 0: the model's screening threshold
    # (chosen on validation data for a target sensitivity, in its manifest), else 0.5.
    refer_threshold: float = 0.0
    smoothing: int = 5  # frames averaged for video sources (stills: 1)
    # "unsure" (see a health worker) when the model's manifest has an out-of-distribution
    # score and threshold and the (smoothed) score crosses it; false: refer/clear only.
    unsure: bool = True
    # The quality gate (retake), measured on a 256-511 px copy. Defaults fitted by
    # scripts/fit_quality_gate.py on real MSID + msld2-dev photos (folds 0-3, cross-validated)
    # and synthetic blur/motion/exposure faults (docs/eval.md); 0 / 2 / 255 / 100 switch a
    # rule off.
    min_sharpness: float = 2.21904  # Laplacian variance; below: blurred
    min_detail: float = 0.0  # fine detail along the weaker axis (see quality.py)
    min_contrast: float = 0.0  # grey-level standard deviation; below: nothing in view
    min_brightness: float = 0.0  # mean grey level; below: too dark
    min_highlight: float = 115.81  # 99th-percentile grey level; below: too dark
    max_brightness: float = 239.05  # mean grey level; above: too bright
    max_saturated: float = 2.0  # blown-out share (tinted pixels twice), 0..2; above: too bright
    max_clipped: float = 1.0  # fraction of pixels at 0-4 or 251-255; above: badly exposed
    min_skin: float = 0.0  # share of skin-coloured pixels; below: no skin in view
    # Learnt scores (log-odds of a fault; qualityscore.py); above: blurred / too bright / too
    # dark. Their coefficients: quality_model, a JSON file the fit script writes (empty: the
    # bundled fit, edge/data/quality/gate.json).
    max_blur_score: float = 1.47846
    max_glare_score: float = 2.00717
    max_dark_score: float = 1.57025
    quality_model: str = ""

    def check(self) -> list[str]:
        e = []
        if not 0.0 <= self.refer_threshold < 1.0:
            e.append(
                f"refer_threshold must be in [0, 1) (0: the model's), not {self.refer_threshold}"
            )
        if not 1 <= self.smoothing <= 300:
            e.append(f"smoothing must be 1..300 frames, not {self.smoothing}")
        if not 0 <= self.min_brightness < self.max_brightness <= 255:
            e.append("need 0 <= min_brightness < max_brightness <= 255")
        if min(self.min_sharpness, self.min_detail, self.min_contrast) < 0:
            e.append("min_sharpness, min_detail and min_contrast must be >= 0")
        if not 0 <= self.min_highlight <= 255:
            e.append(f"min_highlight must be in 0..255, not {self.min_highlight}")
        if not 0 <= self.min_skin < 1:
            e.append(f"min_skin must be in [0, 1), not {self.min_skin}")
        if not (0 < self.max_clipped <= 1 and 0 < self.max_saturated <= 2):
            e.append("max_clipped must be in (0, 1] and max_saturated in (0, 2]")
        if self.quality_model and not Path(self.quality_model).is_file():
            e.append(f"quality_model {self.quality_model} is not a file")
        elif self.quality_model:
            from .qualityscore import load_model  # lazy: OpenCV

            try:
                load_model(self.quality_model)
            except ConfigError as err:
                e.append(str(err))
        return e


@dataclass
class RoiConfig:
    enabled: bool = False
    # Haar cascades: names inside OpenCV's cv2.data.haarcascades, or absolute paths (hands).
    cascades: list[str] = field(default_factory=lambda: ["haarcascade_frontalface_default.xml"])
    margin: float = 0.25  # grow the detected box by this fraction on each side
    min_size: int = 64  # pixels; smaller detections are ignored

    def check(self) -> list[str]:
        e = []
        if self.enabled and not self.cascades:
            e.append("cascades must name at least one cascade when enabled")
        if not 0 <= self.margin <= 2 or self.min_size < 8:
            e.append("margin must be 0..2 and min_size >= 8")
        return e


@dataclass
class EventsConfig:
    path: str = ""  # empty: <state_dir>/events.jsonl
    max_bytes: int = 10_000_000
    backups: int = 5
    every_frame: bool = False  # False: log when the decision changes (and every still image)
    snapshots: bool = False  # patient images stay off the disk unless asked for
    snapshot_dir: str = ""  # empty: <state_dir>/snapshots
    snapshot_labels: list[str] = field(default_factory=lambda: ["refer"])
    max_snapshots: int = 500
    blur_faces: bool = True  # snapshots: faces found by the Haar face finder are blurred

    def check(self) -> list[str]:
        e = []
        if not (4096 <= self.max_bytes <= 1 << 40 and 0 <= self.backups <= 1000):
            e.append("need max_bytes in 4096..2**40 and backups in 0..1000")
        if not 1 <= self.max_snapshots <= 1_000_000:
            e.append("max_snapshots must be 1..1000000")
        bad = set(self.snapshot_labels) - set(DECISIONS)
        if bad:
            e.append(f"snapshot_labels: unknown decision(s) {sorted(bad)} ({', '.join(DECISIONS)})")
        return e


@dataclass
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (tests)
    token: str = ""  # required for a non-loopback host; sent as "Authorization: Bearer ..."
    latest_jpg: bool = True

    def check(self) -> list[str]:
        e = []
        if not 0 <= self.port <= 65535:
            e.append(f"port must be 0..65535, not {self.port}")
        if self.enabled and not is_loopback(self.host) and len(self.token) < 16:
            e.append(
                f"host {self.host!r} is reachable from the network: set token to a random "
                "string of at least 16 characters (openssl rand -hex 24)"
            )
        return e


WEB_DIR = Path(__file__).resolve().parent / "web"


def ui_languages() -> list[str]:
    """The languages the kiosk page ships: one edge/kiosk/web/i18n/<code>.json each."""
    return sorted(p.stem for p in (WEB_DIR / "i18n").glob("*.json"))


@dataclass
class UiConfig:
    """The kiosk page (``GET /``, edge/kiosk/webui.py) on the HTTP server."""

    enabled: bool = True
    language: str = "en"  # default; ?lang= on the page's address overrides it
    stream: bool = True  # /stream.mjpg: encoded only while a browser watches
    stream_width: int = 640  # frames are scaled down to this width for the live view
    stream_fps: float = 30.0  # at most this many live-view frames a second per browser
    stream_quality: int = 70  # JPEG quality of the live view
    heatmap: bool = True  # offer the heatmap toggle on refer/unsure (needs explain = true)

    def check(self) -> list[str]:
        e = []
        langs = ui_languages()
        if self.language not in langs:
            close = difflib.get_close_matches(self.language, langs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            e.append(f"language {self.language!r} is not shipped: one of {', '.join(langs)}{hint}")
        if not 64 <= self.stream_width <= 3840:
            e.append(f"stream_width must be 64..3840 pixels, not {self.stream_width}")
        if not 0 < self.stream_fps <= 120:
            e.append(f"stream_fps must be in (0, 120], not {self.stream_fps}")
        if not 10 <= self.stream_quality <= 95:
            e.append(f"stream_quality must be 10..95, not {self.stream_quality}")
        return e


@dataclass
class Config:
    state_dir: str = field(default_factory=default_state_dir)
    explain: bool = False  # heatmap overlay on /latest.jpg when edge/explain/cam.py provides it
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    roi: RoiConfig = field(default_factory=RoiConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    origin: str = field(default="<defaults>", compare=False)  # not a TOML key

    @property
    def events_path(self) -> Path:
        return Path(self.events.path or Path(self.state_dir) / "events.jsonl")

    @property
    def snapshot_dir(self) -> Path:
        return Path(self.events.snapshot_dir or Path(self.state_dir) / "snapshots")

    @property
    def device_id(self) -> str:
        return self.mqtt.device_id or socket.gethostname().split(".")[0] or "kiosk"

    @property
    def topic_prefix(self) -> str:
        return self.mqtt.topic_prefix or f"mpox-edge/{self.device_id}/"

    @property
    def models_dir(self) -> Path:
        return Path(self.state_dir) / "models"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _type_ok(value: Any, tp: Any) -> bool:
    if tp is float:  # nan and inf are TOML floats: an infinite backoff is not a setting
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {
        str: "a string",
        int: "an integer",
        float: "a finite number",
        bool: "true or false",
    }.get(tp, str(tp))


def _build(cls: type, data: dict[str, Any], where: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name != "origin"]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"{where}{key}: unknown key{hint}")
            continue
        tp = hints[key]
        if isinstance(tp, type) and is_dataclass(tp):
            if not isinstance(value, dict):
                errors.append(f"[{key}]: must be a table")
                continue
            kwargs[key] = _build(tp, value, f"[{key}] ", errors)
        elif not _type_ok(value, tp):
            errors.append(f"{where}{key}: must be {_type_name(tp)}, not {value!r}")
        else:
            kwargs[key] = float(value) if tp is float else value
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        errors.extend(f"{where}{msg}" for msg in obj.check())
    return obj


def from_dict(data: dict[str, Any], origin: str = "<dict>") -> Config:
    """Validate a parsed TOML document; raises one ConfigError listing every problem."""
    errors: list[str] = []
    cfg = _build(Config, data, "", errors)
    if errors:
        raise ConfigError(f"{origin}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    cfg.origin = origin
    return cfg


def load(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> Config:
    """Read and validate the file; the default path may be absent (then: defaults).

    ``overrides`` (``{"source.uri": ..., "http.port": 0}``, from the command line) are
    applied before validation, and again at every SIGHUP reload.
    """
    p = Path(path) if path else DEFAULT_PATH
    data: dict[str, Any] = {}
    if p.is_file():
        if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
            raise ConfigError(
                "reading TOML on Python 3.10 needs the tomli package: pip install tomli"
            )
        try:
            with open(p, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"
            ) from None
        except RecursionError:
            raise ConfigError(f"{p}: nested too deeply to be a configuration") from None
        except OSError as e:
            raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    elif path is not None:
        raise ConfigError(f"config file {p} does not exist")
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        node = data
        for sec in sections:
            if not isinstance(node.get(sec), dict):
                node[sec] = {}
            node = node[sec]
        node[key] = value
    return from_dict(data, str(p) if p.is_file() else "<defaults>")
