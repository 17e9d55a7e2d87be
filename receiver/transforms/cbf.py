"""The ``cbf`` transform: a frame whose blob is a Pilatus mini-CBF file, to int32 pixels.

The Pilatus streamer sends each CBF file from the camserver's RAM disk whole,
as the image blob (compression ``cbf``). The format (where the binary section
is, what its header must say, the byte-offset decoding) is
:mod:`protocols.cbf`'s; this module checks the file against the message
that carries it and names a bad frame the receiver's way. The Pilatus text
header is not read: what the receiver needs of it (exposure time) comes in
the message's JSON fields.
"""

from __future__ import annotations

import numpy as np

from protocols import cbf
from protocols.errors import MalformedMessage
from protocols.model import Image


def decode(image: Image) -> np.ndarray:
    """The frame's pixels as an int32 array of the shape the CBF header gives."""
    if image.compression != "cbf":
        raise MalformedMessage(f"cbf: the frame's compression is {image.compression!r}, not 'cbf'")
    try:
        section = cbf.binary_section(image.data)
        if tuple(image.shape) != section.shape:
            rows, columns = section.shape
            raise MalformedMessage(
                f"cbf: the file holds {rows} rows of {columns} pixels"
                f" but the message announces shape {list(image.shape)}"
            )
        return cbf.decode_pixels(image.data, section)
    except cbf.CbfError as exc:
        raise MalformedMessage(f"cbf: {exc}") from None
