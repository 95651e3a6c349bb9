"""Hostile image files (issue 13, cases 1, 8 and 11): bombs, rotated phone photos, special
files, symlink loops, control characters in names, 1x1 images. Every file is made here."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fakes import textured
from mpox_edge.edge.errors import DataError
from mpox_edge.edge.model import dataset
from mpox_edge.edge.model.imageinfo import sniff

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int, *, depth: int = 8, rows: int | None = None) -> bytes:
    """A valid PNG of zeros; ``rows`` < h: the header claims more than the data holds."""
    row = b"\x00" + bytes(w * 3 * depth // 8)
    c = zlib.compressobj(1)
    block = row * 100
    n = h if rows is None else rows
    idat = b"".join(c.compress(block) for _ in range(n // 100)) + c.compress(row * (n % 100))
    idat += c.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def jpeg_with_size(w: int, h: int, *, progressive: bool = False) -> bytes:
    """A small real JPEG whose frame header is patched to claim ``w`` x ``h``."""
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    ok, enc = cv2.imencode(".jpg", textured(64, 64), flags)
    b = bytearray(enc.tobytes())
    sof = 0xC2 if progressive else 0xC0
    i = b.index(bytes([0xFF, sof]))
    b[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(b)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    big = cv2.imencode(".webp", textured(64, 64))[1].tobytes()
    # a VP8X WebP claiming a 16384x16384 canvas
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0, 0, 0, 0]) + (16383).to_bytes(3, "little") * 2
    webp = b"RIFF" + struct.pack("<I", 4 + len(vp8x) + len(big) - 12) + b"WEBP" + vp8x + big[12:]
    bmp = bytearray(cv2.imencode(".bmp", textured(64, 64))[1].tobytes())
    bmp[18:26] = struct.pack("<ii", 30000, 30000)
    return {
        "png_10k.png": png_bomb(10000, 10000),  # real: decodes to 300 MB
        "png16_25k.png": png_bomb(25000, 25000, depth=16, rows=50),  # header bomb, 7.5 GB
        "jpeg_60k.jpg": jpeg_with_size(60000, 60000),
        "jpeg_prog_9k.jpg": jpeg_with_size(9000, 8000, progressive=True),
        "webp_16k.webp": webp,
        "bmp_30k.bmp": bytes(bmp),
    }


def test_bombs_are_refused_from_the_header(bombs: dict[str, bytes], tmp_path: Path) -> None:
    assert len(bombs["png_10k.png"]) < 2_000_000  # 1.3 MB on disk, 300 MB decoded
    for name, data in bombs.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as e:
            dataset.read_image(tmp_path / name)
        assert "too large" in str(e.value) and name in str(e.value), str(e.value)
    assert sniff(bombs["png16_25k.png"]).decoded_bytes == 25000 * 25000 * 6
    ppm = tmp_path / "x.jpg"  # a format OpenCV decodes but we do not parse: refused
    ppm.write_bytes(b"P6\n64 64\n255\n" + bytes(64 * 64 * 3))
    assert cv2.imread(str(ppm)) is not None
    with pytest.raises(DataError, match="not a PNG, JPEG, WebP, BMP or TIFF"):
        dataset.read_image(ppm)


def test_large_baseline_jpeg_is_decoded_scaled_down(tmp_path: Path) -> None:
    img = cv2.resize(textured(500, 500), (6000, 6000), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "big.jpg"), img)
    cv2.imwrite(str(tmp_path / "bigp.jpg"), img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    del img
    code = (
        "import resource,sys; from mpox_edge.edge.model.dataset import read_image\n"
        "r0=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "a=read_image(sys.argv[1]); r1=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(a.shape[0], a.shape[1], (r1-r0)//1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "big.jpg")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    h, w, mb = map(int, out)
    assert (h, w) == (3000, 3000)  # 36 MP > 16 MP: half scale
    assert mb < 60, f"reduced decode grew RSS by {mb} MB (a full decode: ~200 MB)"
    with pytest.raises(DataError, match="too large to decode safely"):
        dataset.read_image(tmp_path / "bigp.jpg")  # progressive: no scaled decode in libjpeg


def _peak_rss_eval(data: Path) -> tuple[int, dict]:
    code = (
        "import resource,subprocess,sys\n"
        "p=subprocess.run(sys.argv[1:],capture_output=True,text=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(p.stdout)"
    )
    cmd = [sys.executable, "-m", "mpox_edge.edge.cli", "eval", "--data", str(data), "--json", "-"]
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True
    ).stdout
    rss, _, rest = out.partition("\n")
    return int(rss), json.loads(rest)


def test_eval_peak_rss_with_bombs_stays_within_10_percent(
    bombs: dict[str, bytes], tmp_path: Path
) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    for root in (clean, dirty):
        for i, c in enumerate(CLASSES):
            (root / c).mkdir(parents=True)
            cv2.imwrite(str(root / c / f"{i}.jpg"), textured(480, 640, seed=i))
    for name, data in bombs.items():
        (dirty / "Monkeypox" / name).write_bytes(data)
    rss_clean, rep_clean = _peak_rss_eval(clean)
    rss_dirty, rep_dirty = _peak_rss_eval(dirty)
    r, c = rep_dirty["results"][0], rep_clean["results"][0]
    assert r["n_skipped"] == len(bombs) and c["n_skipped"] == 0
    assert r["n"] == c["n"] == 4
    assert {Path(s["path"]).name for s in r["skipped"]} == set(bombs)
    assert rss_dirty <= 1.10 * rss_clean, (rss_clean, rss_dirty)


# -- EXIF orientation ----------------------------------------------------------------------------
def _with_orientation(img: np.ndarray, fmt: str, orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    kw = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(img[:, :, ::-1]).save(buf, fmt, exif=exif.tobytes(), **kw)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencvs_own(orientation: int) -> None:
    img = textured(60, 100, seed=orientation)
    data = _with_orientation(img, "JPEG", orientation)
    ours = dataset.decode_image(data)
    theirs = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
    if orientation in (5, 6, 7, 8):
        assert ours.shape[:2] == (100, 60)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_in_png_and_webp(fmt: str) -> None:
    img = textured(60, 100)
    got = dataset.decode_image(_with_orientation(img, fmt, 6))
    assert np.array_equal(got, cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE))


def test_a_rotated_phone_photo_gets_the_same_prediction(tmp_path: Path) -> None:
    from mpox_edge.edge.model.classifier import Classifier

    up = textured(300, 400, red=170, seed=4)
    stored = cv2.rotate(up, cv2.ROTATE_90_COUNTERCLOCKWISE)  # the sensor's orientation
    lossless = _with_orientation(up, "PNG", 1)
    rotated = _with_orientation(stored, "PNG", 6)  # "rotate 90 CW to display"
    (tmp_path / "up.png").write_bytes(lossless)
    (tmp_path / "rot.png").write_bytes(rotated)
    clf = Classifier.open(None, backend="onnxruntime")
    try:
        a = clf.predict(dataset.read_image(tmp_path / "up.png")).probs
        b = clf.predict(dataset.read_image(tmp_path / "rot.png")).probs
        raw = clf.predict(cv2.imread(str(tmp_path / "rot.png"), cv2.IMREAD_UNCHANGED)).probs
    finally:
        clf.close()
    assert np.allclose(a, b, atol=1e-6)
    assert not np.allclose(a, raw, atol=1e-3)  # ignoring EXIF does change the answer


# -- small cases (11) ----------------------------------------------------------------------------
def test_tiny_images_are_refused(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(DataError, match=r"dot.png: image too small \(1x1 png"):
        dataset.read_image(tmp_path / "dot.png")


def test_special_files_loops_and_odd_names_are_listed(tmp_path: Path) -> None:
    mk = tmp_path / "Monkeypox"
    mk.mkdir()
    (tmp_path / "Normal").mkdir()
    cv2.imwrite(str(mk / "ok.jpg"), textured())
    cv2.imwrite(str(tmp_path / "Normal" / "ok.jpg"), textured(seed=2))
    os.mkfifo(mk / "fifo.jpg")
    (mk / "self.jpg").symlink_to("self.jpg")  # ELOOP
    (mk / "loop").symlink_to(".")  # a folder that contains itself
    (mk / "evil\nname.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    s = dataset.scan_folder(tmp_path, CLASSES)
    reasons = dict(s.skipped)
    assert "not a regular file" in reasons[str(mk / "fifo.jpg")]
    assert "broken or looping symlink" in reasons[str(mk / "self.jpg")]
    assert "symlink loop" in reasons[str(mk / "loop")]
    assert [p.name for p, _ in s.items] == ["evil\nname.jpg", "ok.jpg", "ok.jpg"]
    got = list(s.iter_images())
    bad = [why for _, _, img, why in got if img is None]
    assert len(bad) == 1 and "\n" not in bad[0] and "evil\\nname.jpg" in bad[0]
    with pytest.raises(DataError, match="not a regular file"):  # and it does not block
        dataset.read_image(mk / "fifo.jpg")


def test_deeply_nested_manifest_is_one_clear_error(tmp_path: Path) -> None:
    from mpox_edge.edge.errors import ManifestError
    from mpox_edge.edge.model.manifest import ModelDir

    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="nested too deeply"):
        ModelDir.load(tmp_path)
