"""Pilatus mini-CBF files to int32 pixels.

The Pilatus streamer sends each CBF file from the camserver's RAM disk whole,
as the image blob (compression ``cbf``). Only the MIME-like header of the
binary section is read here (sizes, element type, conversion); the Pilatus
text header is not, since what the receiver needs of it (exposure time)
comes in the message's JSON fields. The byte-offset decoding is
fabio's compiled decoder: about 1.5 ms for a Pilatus 2M frame, so there is no
reason for a decoder of our own.
"""

from __future__ import annotations

import math
import re
import struct

import numpy as np
from fabio.compression import decByteOffset

from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image

MARKER = re.compile(re.escape(b"\x0c\x1a\x04\xd5"))
SECTION = b"--CIF-BINARY-FORMAT-SECTION--"
FIELD = re.compile(rb"^([A-Za-z][\w-]*):[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)
CONVERSIONS = re.compile(rb'conversions="([^"]*)"')
BYTE_OFFSET = "x-CBF_BYTE_OFFSET"
ELEMENT_TYPE = "signed 32-bit integer"

SENTINEL_DELTA = -(2**30)
SENTINEL = b"\x80\x00\x80" + struct.pack("<i", SENTINEL_DELTA) + bytes(6)
"""One extra pixel (a 32-bit delta no Pilatus frame holds) and 6 guard bytes.

fabio's decoder reports neither how many bytes it used nor checks its reads
against the end of the stream. Asked for one pixel more than the header
announces, it must find exactly this delta there: then exactly that many
pixels ended exactly where ``X-Binary-Size`` says the stream ends. The guard
bytes keep an escape cut short by a damaged stream inside the buffer.
"""


def decode(image: Image) -> np.ndarray:
    """The frame's pixels as an int32 array of the shape the CBF header gives."""
    if image.compression != "cbf":
        raise MalformedMessage(f"cbf: the frame's compression is {image.compression!r}, not 'cbf'")
    found = MARKER.search(image.data)
    if found is None:
        raise MalformedMessage("cbf: no binary section (start marker 0C 1A 04 D5 not found)")
    fields = _binary_header(bytes(memoryview(image.data)[: found.start()]))
    shape = (fields["X-Binary-Size-Second-Dimension"], fields["X-Binary-Size-Fastest-Dimension"])
    if tuple(image.shape) != shape:
        raise MalformedMessage(
            f"cbf: the file holds {shape[0]} rows of {shape[1]} pixels"
            f" but the message announces shape {list(image.shape)}"
        )
    start = found.end()
    size = fields["X-Binary-Size"]
    stream = memoryview(image.data)[start : start + size]
    if len(stream) < size:
        raise MalformedMessage(
            f"cbf: X-Binary-Size is {size} bytes but only {len(stream)} follow the start marker"
        )
    return _byte_offset(stream, math.prod(shape)).reshape(shape)


def _binary_header(text: bytes) -> dict[str, int]:
    """Check the binary section's header and return its sizes."""
    section = text.rpartition(SECTION)[2]
    fields = {key.decode(): value.decode("latin-1") for key, value in FIELD.findall(section)}
    conversions = CONVERSIONS.search(section)
    if conversions is None or conversions[1] != BYTE_OFFSET.encode():
        found = conversions[1].decode("latin-1") if conversions else "none given"
        raise MalformedMessage(f"cbf: conversions must be {BYTE_OFFSET!r}, found {found!r}")
    element = fields.get("X-Binary-Element-Type", "").strip('"')
    if element != ELEMENT_TYPE:
        raise MalformedMessage(
            f"cbf: X-Binary-Element-Type must be {ELEMENT_TYPE!r}, found {element or 'none'!r}"
        )
    order = fields.get("X-Binary-Element-Byte-Order", "LITTLE_ENDIAN")
    if order != "LITTLE_ENDIAN":
        raise MalformedMessage(f"cbf: X-Binary-Element-Byte-Order {order!r} is not LITTLE_ENDIAN")
    sizes = {}
    for key in (
        "X-Binary-Size",
        "X-Binary-Size-Fastest-Dimension",
        "X-Binary-Size-Second-Dimension",
    ):
        value = fields.get(key, "")
        if not (value.isascii() and value.isdigit()) or int(value) == 0:
            raise MalformedMessage(f"cbf: {key} must be a positive integer, found {value!r}")
        sizes[key] = int(value)
    return sizes


def _byte_offset(stream: Buffer, count: int) -> np.ndarray:
    """Decode exactly ``count`` int32 pixels that fill ``stream`` exactly (see SENTINEL)."""
    decoded = decByteOffset(b"".join((stream, SENTINEL)), count + 1, dtype="int32")
    if len(decoded) != count + 1 or int(decoded[-1]) - int(decoded[-2]) != SENTINEL_DELTA:
        raise MalformedMessage(
            f"cbf: the {len(stream)}-byte byte-offset stream does not hold exactly"
            f" {count} pixels (corrupt or truncated data)"
        )
    return decoded[:count]
