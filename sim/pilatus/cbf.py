"""Pilatus mini-CBF files, as camserver writes them on the DCU's RAM disk.

Layout (``PROTOCOLS.md``; Dectris' own CBF template and the files MX
beamlines keep): a ``###CBF`` line, ``data_<name>``, the Pilatus text header
in ``_array_data.header_contents`` (``# Exposure_time 0.0970000 s`` ...),
then ``_array_data.data`` with a MIME-like block announcing the
byte-offset conversion, sizes and the MD5 of the binary data, the 4 bytes
``0C 1A 04 D5``, the byte-offset stream, 4095 bytes of zero padding and the
closing ``--CIF-BINARY-FORMAT-SECTION----``. Lines end in CR LF. The
byte-offset compression is fabio's compiled encoder (about 5 ms for a
Pilatus3 2M frame), so the simulator keeps up with the detector's 250 Hz.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from fabio.compression import compByteOffset

BINARY_START = b"\x0c\x1a\x04\xd5"
PADDING = 4095
PIXEL_SIZE_M = 172e-6
COUNT_CUTOFF = 1_048_574


@dataclass(frozen=True, slots=True)
class CbfHeader:
    """What camserver writes into every image's text header."""

    detector: str = "PILATUS3 2M, S/N 24-0000 (simulated)"
    exposure_time: float = 1.0
    exposure_period: float = 1.05
    energy_ev: float = 12_000.0
    image_path: str = "/ramdisk/"
    sensor_thickness_m: float = 0.001


def header_contents(header: CbfHeader, when: datetime) -> str:
    """The ``# keyword value`` lines of the Pilatus header (``_array_data.header_contents``)."""
    stamp = when.strftime("%Y-%b-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    image_path = header.image_path if header.image_path.endswith("/") else header.image_path + "/"
    lines = [
        f"# Detector: {header.detector}",
        f"# {stamp}",
        f"# Pixel_size {PIXEL_SIZE_M * 1e6:.0f}e-6 m x {PIXEL_SIZE_M * 1e6:.0f}e-6 m",
        f"# Silicon sensor, thickness {header.sensor_thickness_m:.6f} m",
        f"# Exposure_time {header.exposure_time:.7f} s",
        f"# Exposure_period {header.exposure_period:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {COUNT_CUTOFF} counts",
        f"# Threshold_setting: {header.energy_ev / 2:.0f} eV",
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
        "--CIF-BINARY-FORMAT-SECTION--\r\n"
        "Content-Type: application/octet-stream;\r\n"
        '     conversions="x-CBF_BYTE_OFFSET"\r\n'
        "Content-Transfer-Encoding: BINARY\r\n"
        f"X-Binary-Size: {len(stream)}\r\n"
        "X-Binary-ID: 1\r\n"
        'X-Binary-Element-Type: "signed 32-bit integer"\r\n'
        "X-Binary-Element-Byte-Order: LITTLE_ENDIAN\r\n"
        f"Content-MD5: {digest}\r\n"
        f"X-Binary-Number-of-Elements: {data.size}\r\n"
        f"X-Binary-Size-Fastest-Dimension: {columns}\r\n"
        f"X-Binary-Size-Second-Dimension: {rows}\r\n"
        f"X-Binary-Size-Padding: {PADDING}\r\n"
        "\r\n"
    )
    trailer = b"\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n\r\n"
    return b"".join((text.encode("ascii"), BINARY_START, stream, bytes(PADDING), trailer))
