"""Pilatus mini-CBF files, as camserver writes them: encode, check, locate and decode.

The simulator encodes them, the streamer checks that a file on the RAM disk
is whole before it sends it, and the receiver's ``cbf`` transform decodes the
pixels; one definition of the layout keeps the three agreeing. Layout
(Dectris' CBF template and the files MX beamlines keep; docs/pilatus.md): a
``###CBF`` line, ``data_<name>``, the Pilatus text header in
``_array_data.header_contents`` (``# Exposure_time 0.0970000 s`` ...), then
``_array_data.data`` with a MIME-like block announcing the byte-offset
conversion, sizes and the MD5 of the binary data, the 4 bytes ``0C 1A 04 D5``,
the byte-offset stream, 4095 bytes of zero padding and the closing
``--CIF-BINARY-FORMAT-SECTION----``. Lines end in CR LF.

The byte-offset compression is fabio's compiled code both ways: its encoder
takes about 5 ms for a Pilatus3 2M frame (the simulator keeps up with the
detector's 250 Hz), its decoder about 1.5 ms, so there is no reason for a
codec of our own; fabio reading a file is also what the tests compare with.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from fabio.compression import compByteOffset, decByteOffset

from protocols.camserver import timestamp
from protocols.model import Buffer

MARKER = b"\x0c\x1a\x04\xd5"
"""The 4 bytes that start the binary section's byte-offset stream."""
SECTION = b"--CIF-BINARY-FORMAT-SECTION--"
CLOSING = SECTION + b"--"
"""Written after the stream and its padding: the file is whole once it is there."""
PADDING = 4095
PIXEL_SIZE_M = 172e-6
COUNT_CUTOFF = 1_048_574
BYTE_OFFSET = "x-CBF_BYTE_OFFSET"
ELEMENT_TYPE = "signed 32-bit integer"
HEADER_SEARCH = 1 << 16
"""A file this short without the start marker may still be being written; longer, it is no CBF."""

_MARKER = re.compile(re.escape(MARKER))
_FIELD = re.compile(rb"^([A-Za-z][\w-]*):[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)
_CONVERSIONS = re.compile(rb'conversions="([^"]*)"')
_EXPOSURE_TIME = re.compile(rb"# Exposure_time ([-+0-9.eE]+) s")
_SIZES = ("X-Binary-Size", "X-Binary-Size-Fastest-Dimension", "X-Binary-Size-Second-Dimension")

SENTINEL_DELTA = -(2**30)
SENTINEL = b"\x80\x00\x80" + struct.pack("<i", SENTINEL_DELTA) + bytes(6)
"""One extra pixel (a 32-bit delta no Pilatus frame holds) and 6 guard bytes.

fabio's decoder reports neither how many bytes it used nor checks its reads
against the end of the stream. Asked for one pixel more than the header
announces, it must find exactly this delta there: then exactly that many
pixels ended exactly where ``X-Binary-Size`` says the stream ends. The guard
bytes keep an escape cut short by a damaged stream inside the buffer.
"""


class CbfError(ValueError):
    """Not a Pilatus mini-CBF of signed 32-bit byte-offset pixels; the text says why."""


class CbfIncomplete(CbfError):
    """A CBF still being written: its binary section is not all there yet."""


@dataclass(frozen=True, slots=True)
class CbfHeader:
    """What camserver writes into every image's text header."""

    detector: str = "PILATUS3 2M, S/N 24-0000 (simulated)"
    exposure_time: float = 1.0
    exposure_period: float = 1.05
    threshold_ev: float = 6_000.0
    image_path: str = "/ramdisk/"
    sensor_thickness_m: float = 0.001


@dataclass(frozen=True, slots=True)
class BinarySection:
    """Where a file's pixels are: ``size`` bytes of byte-offset stream from ``offset``."""

    offset: int
    size: int
    shape: tuple[int, int]


@dataclass(frozen=True, slots=True)
class CbfInfo:
    """What an image message needs from a CBF file's headers."""

    shape: tuple[int, int]
    exposure_time: float | None


def header_contents(header: CbfHeader, when: datetime) -> str:
    """The ``# keyword value`` lines of the Pilatus header (``_array_data.header_contents``)."""
    image_path = header.image_path if header.image_path.endswith("/") else header.image_path + "/"
    lines = [
        f"# Detector: {header.detector}",
        f"# {timestamp(when)}",
        f"# Pixel_size {PIXEL_SIZE_M * 1e6:.0f}e-6 m x {PIXEL_SIZE_M * 1e6:.0f}e-6 m",
        f"# Silicon sensor, thickness {header.sensor_thickness_m:.6f} m",
        f"# Exposure_time {header.exposure_time:.7f} s",
        f"# Exposure_period {header.exposure_period:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {COUNT_CUTOFF} counts",
        f"# Threshold_setting: {header.threshold_ev:.0f} eV",
        "# Gain_setting: autog (vrf = 1.000)",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: (nil)",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        f"# Image_path: {image_path}",
        "# Ratecorr_lut_directory: ContinuousStandard_v1.1",
        "# Retrigger_mode: 1",
    ]
    return "\r\n".join(lines) + "\r\n"


def encode(pixels: np.ndarray, name: str, header: CbfHeader, when: datetime) -> bytes:
    """The whole file for ``pixels`` (2-D, converted to int32) named ``name``."""
    if pixels.ndim != 2:
        raise ValueError(f"a Pilatus image is 2-D, not of shape {pixels.shape}")
    data = np.ascontiguousarray(pixels, dtype=np.int32)
    stream = compByteOffset(data)
    digest = base64.b64encode(hashlib.md5(stream).digest()).decode()
    rows, columns = data.shape
    block = name.rsplit(".", 1)[0]
    text = (
        "###CBF: VERSION 1.5, CBFlib v0.7.8 - PILATUS detectors\r\n"
        "\r\n"
        f"data_{block}\r\n"
        "\r\n"
        '_array_data.header_convention "PILATUS_1.2"\r\n'
        "_array_data.header_contents\r\n"
        ";\r\n"
        f"{header_contents(header, when)}"
        ";\r\n"
        "\r\n"
        "_array_data.data\r\n"
        ";\r\n"
        f"{SECTION.decode()}\r\n"
        "Content-Type: application/octet-stream;\r\n"
        f'     conversions="{BYTE_OFFSET}"\r\n'
        "Content-Transfer-Encoding: BINARY\r\n"
        f"X-Binary-Size: {len(stream)}\r\n"
        "X-Binary-ID: 1\r\n"
        f'X-Binary-Element-Type: "{ELEMENT_TYPE}"\r\n'
        "X-Binary-Element-Byte-Order: LITTLE_ENDIAN\r\n"
        f"Content-MD5: {digest}\r\n"
        f"X-Binary-Number-of-Elements: {data.size}\r\n"
        f"X-Binary-Size-Fastest-Dimension: {columns}\r\n"
        f"X-Binary-Size-Second-Dimension: {rows}\r\n"
        f"X-Binary-Size-Padding: {PADDING}\r\n"
        "\r\n"
    )
    trailer = b"\r\n" + CLOSING + b"\r\n;\r\n\r\n"
    return b"".join((text.encode("ascii"), MARKER, stream, bytes(PADDING), trailer))


def binary_section(data: Buffer) -> BinarySection:
    """Find the binary section and check its MIME-like header: :class:`CbfError` says what is off.

    Only that header is read (conversion, element type, byte order, sizes):
    what a consumer needs of the Pilatus text header it reads itself.
    """
    found = _MARKER.search(data)
    if found is None:
        raise CbfError("no binary section (start marker 0C 1A 04 D5 not found)")
    text = bytes(memoryview(data)[: found.start()]).rpartition(SECTION)[2]
    fields = {key.decode(): value.decode("latin-1") for key, value in _FIELD.findall(text)}
    conversions = _CONVERSIONS.search(text)
    if conversions is None or conversions[1] != BYTE_OFFSET.encode():
        given = conversions[1].decode("latin-1") if conversions else "none given"
        raise CbfError(f"conversions must be {BYTE_OFFSET!r}, found {given!r}")
    element = fields.get("X-Binary-Element-Type", "").strip('"')
    if element != ELEMENT_TYPE:
        raise CbfError(
            f"X-Binary-Element-Type must be {ELEMENT_TYPE!r}, found {element or 'none'!r}"
        )
    order = fields.get("X-Binary-Element-Byte-Order", "LITTLE_ENDIAN")
    if order != "LITTLE_ENDIAN":
        raise CbfError(f"X-Binary-Element-Byte-Order {order!r} is not LITTLE_ENDIAN")
    sizes = []
    for key in _SIZES:
        value = fields.get(key, "")
        if not (value.isascii() and value.isdigit()) or int(value) == 0:
            raise CbfError(f"{key} must be a positive integer, found {value!r}")
        sizes.append(int(value))
    size, columns, rows = sizes
    return BinarySection(found.end(), size, (rows, columns))


def decode_pixels(data: Buffer, section: BinarySection) -> np.ndarray:
    """The int32 pixels of ``section``; :class:`CbfError` unless its stream holds exactly them."""
    stream = memoryview(data)[section.offset : section.offset + section.size]
    if len(stream) < section.size:
        raise CbfError(
            f"X-Binary-Size is {section.size} bytes but only {len(stream)} follow the start marker"
        )
    count = math.prod(section.shape)
    decoded: np.ndarray = decByteOffset(b"".join((stream, SENTINEL)), count + 1, dtype="int32")
    if len(decoded) != count + 1 or int(decoded[-1]) - int(decoded[-2]) != SENTINEL_DELTA:
        raise CbfError(
            f"the {len(stream)}-byte byte-offset stream does not hold exactly"
            f" {count} pixels (corrupt or truncated data)"
        )
    return decoded[:count].reshape(section.shape)


def read_cbf_info(data: bytes) -> CbfInfo:
    """Shape and exposure time of a whole mini-CBF; :class:`CbfIncomplete` while it is written."""
    if len(data) < HEADER_SEARCH and MARKER not in data:
        raise CbfIncomplete(f"no binary section yet in {len(data)} bytes")
    section = binary_section(data)
    end = section.offset + section.size
    if len(data) < end:
        raise CbfIncomplete(
            f"{len(data) - section.offset} of {section.size} bytes of pixel data so far"
        )
    if data.find(CLOSING, end) < 0:
        raise CbfIncomplete("pixel data complete, the closing boundary not written yet")
    found = _EXPOSURE_TIME.search(data, 0, section.offset)
    return CbfInfo(section.shape, float(found[1]) if found else None)
