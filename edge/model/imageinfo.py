"""What an image file claims to be, read from its header before anything is decoded.

A 1.2 MB PNG can declare 20000x20000 pixels (a decompression bomb: 1.2 GB once decoded), so
the size limit must come from the header, not from the decoded array. We parse the few
formats a kiosk or a data folder holds (PNG, JPEG, WebP, BMP, TIFF) and refuse anything
else OpenCV would happily decode (PNM, Sun raster, HDR, JPEG 2000...). The EXIF orientation
tag is read here too: phones store photos rotated and say so only in EXIF, and OpenCV
ignores it for the decode modes we need (``IMREAD_UNCHANGED``, ``IMREAD_REDUCED_*``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DataError

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_BASELINE = {0xC0, 0xC1}  # sequential Huffman: libjpeg can decode these scaled down
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> decoded channels


@dataclass(frozen=True)
class ImageInfo:
    format: str  # png | jpeg | webp | bmp | tiff
    width: int
    height: int
    channels: int = 3
    bytes_per_sample: int = 1
    orientation: int = 1  # EXIF 1..8; 1 = as stored
    reducible: bool = False  # OpenCV's IMREAD_REDUCED_* saves memory (baseline JPEG only)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the full decode (the array OpenCV allocates, before our conversions)."""
        return self.pixels * self.channels * self.bytes_per_sample


def sniff(data: bytes) -> ImageInfo:
    """Format, size and orientation from the header; DataError if unknown or truncated."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
    except (struct.error, IndexError, ValueError):
        raise DataError("truncated or malformed image header") from None
    raise DataError("not a PNG, JPEG, WebP, BMP or TIFF image")


def _png(d: bytes) -> ImageInfo:
    if d[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    w, h, depth, ctype = struct.unpack(">IIBB", d[16:26])
    orient, pos = 1, 8
    while pos + 8 <= len(d):  # chunks up to the image data: eXIf lives before IDAT
        n, kind = struct.unpack(">I4s", d[pos : pos + 8])
        if kind == b"eXIf":
            orient = exif_orientation(d[pos + 8 : pos + 8 + n])
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + n
    chans = _PNG_CHANNELS.get(ctype)
    if chans is None:
        raise ValueError("bad colour type")
    return ImageInfo("png", w, h, chans, 2 if depth == 16 else 1, orient)


def _jpeg(d: bytes) -> ImageInfo:
    pos, orient = 2, 1
    while pos + 4 <= len(d):
        if d[pos] != 0xFF:
            raise ValueError("marker expected")
        marker = d[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers carry no length
            pos += 2
            continue
        (n,) = struct.unpack(">H", d[pos + 2 : pos + 4])
        seg = d[pos + 4 : pos + 2 + n]
        if marker == 0xE1 and seg.startswith(b"Exif\x00\x00"):
            orient = exif_orientation(seg[6:])
        if marker in _JPEG_SOF:
            h, w, comps = struct.unpack(">HHB", seg[1:6])
            return ImageInfo("jpeg", w, h, 3, 1, orient, reducible=marker in _JPEG_BASELINE)
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + n
    raise ValueError("no frame header")


def _webp(d: bytes) -> ImageInfo:
    kind, body = d[12:16], d[20:]
    orient, alpha = 1, False
    if kind == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        w, h = (v & 0x3FFF for v in struct.unpack("<HH", body[6:10]))
    elif kind == b"VP8L":
        if body[0] != 0x2F:
            raise ValueError("bad VP8L signature")
        (bits,) = struct.unpack("<I", body[1:5])
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha = bool(bits >> 28 & 1)
    elif kind == b"VP8X":
        alpha = bool(body[0] & 0x10)
        w = int.from_bytes(body[4:7], "little") + 1
        h = int.from_bytes(body[7:10], "little") + 1
        pos = 12
        while pos + 8 <= len(d):
            ck, (n,) = d[pos : pos + 4], struct.unpack("<I", d[pos + 4 : pos + 8])
            if ck == b"EXIF":
                blob = d[pos + 8 : pos + 8 + n]
                orient = exif_orientation(blob[6:] if blob.startswith(b"Exif\x00\x00") else blob)
            pos += 8 + n + (n & 1)
    else:
        raise ValueError("unknown WebP chunk")
    return ImageInfo("webp", w, h, 4 if alpha else 3, 1, orient)


def _bmp(d: bytes) -> ImageInfo:
    w, h = struct.unpack("<ii", d[18:26])
    (bpp,) = struct.unpack("<H", d[28:30])
    if w <= 0 or h == 0:
        raise ValueError("bad BMP size")
    return ImageInfo("bmp", w, abs(h), 4 if bpp == 32 else 3, 1)


def _tiff(d: bytes) -> ImageInfo:
    tags = _ifd0(d)
    w, h = tags.get(256, 0), tags.get(257, 0)
    if not w or not h:
        raise ValueError("no TIFF size tags")
    bits = tags.get(258, 8)
    # the TIFF decoder applies its own Orientation tag: nothing for us to do afterwards
    return ImageInfo("tiff", w, h, max(1, tags.get(277, 1)), max(1, bits // 8), 1)


def _ifd0(t: bytes) -> dict[int, int]:
    """First values of the scalar tags of a TIFF structure's first directory."""
    end = {b"II": "<", b"MM": ">"}[t[:2]]
    (off,) = struct.unpack(end + "I", t[4:8])
    (count,) = struct.unpack(end + "H", t[off : off + 2])
    out: dict[int, int] = {}
    for i in range(min(count, 512)):
        e = t[off + 2 + 12 * i : off + 14 + 12 * i]
        tag, typ = struct.unpack(end + "HH", e[:4])
        if typ == 3:  # SHORT
            out[tag] = struct.unpack(end + "H", e[8:10])[0]
        elif typ == 4:  # LONG
            out[tag] = struct.unpack(end + "I", e[8:12])[0]
    return out


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of an EXIF block, 1 if absent or unreadable."""
    try:
        v = _ifd0(tiff).get(0x0112, 1)
    except (struct.error, IndexError, KeyError, ValueError):
        return 1
    return v if 1 <= v <= 8 else 1
