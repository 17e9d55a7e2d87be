"""A live-view client written as MAX IV's are, for the drop-in tests.

MAX IV's clients ``GET /last_frame``, unpickle ``[header, blob, ...]`` and
decode the blob themselves: ``bitshuffle.decompress_lz4(blob, header["shape"],
header["type"])`` for ``bslz4``, ``numpy.frombuffer`` otherwise. Their
``bitshuffle`` is MAX IV's own Python binding (``bitshuffle-python`` from MAX
IV's conda channel, weninc/bitshuffle on GitHub), whose ``decompress_lz4``
takes the whole HDF5-filter chunk, reads the uncompressed size and block size
from its 12-byte header and trusts them: a blob that is not such a chunk
crashes the client. PyPI's ``bitshuffle`` (installed here) takes the blocks
without the header, so :func:`decompress_lz4` does what MAX IV's does, on top
of it, trusting the header just as blindly.

Run as a process (``python -m tests.maxiv_client URL OUT.npy``), it fetches
the latest frame, decodes it and saves the pixels, so a crash is that
process's exit status and not the test runner's.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
from typing import Any

import bitshuffle
import httpx
import numpy as np


def decompress_lz4(data: Any, shape: Any, dtype: Any) -> np.ndarray:
    """MAX IV's ``bitshuffle.decompress_lz4(data, shape, dtype)``: a whole chunk, header first."""
    dtype = np.dtype(dtype)
    nbytes, block_bytes = struct.unpack(">QI", bytes(data[:12]))
    blocks = np.frombuffer(data, dtype=np.uint8)[12:]
    pixels: np.ndarray = bitshuffle.decompress_lz4(
        blocks, tuple(shape), dtype, block_bytes // dtype.itemsize
    )
    assert pixels.nbytes == nbytes, f"chunk header says {nbytes} bytes, shape gives {pixels.nbytes}"
    return pixels


def decode(parts: list[Any]) -> np.ndarray:
    """The pixels of MAX IV's ``[header, blob, ...]``: one blob, or one per plane (``chunks``)."""
    header, *blobs = parts
    shape, dtype = list(header["shape"]), np.dtype(header["type"])
    plane = list(header["chunks"])[1:] if "chunks" in header else shape
    if header["compression"] == "bslz4":
        planes = [decompress_lz4(blob, plane, dtype) for blob in blobs]
    elif header["compression"] == "none":
        planes = [np.frombuffer(blob, dtype=dtype).reshape(plane) for blob in blobs]
    else:
        raise ValueError(f"compression {header['compression']!r}")
    return np.stack(planes) if "chunks" in header else planes[0]


def fetch(url: str) -> list[Any]:
    """``GET url/last_frame`` as MAX IV's clients ask: no format given."""
    answer = httpx.get(f"{url}/last_frame", timeout=10)
    answer.raise_for_status()
    assert answer.headers["content-type"] == "image/pickle", answer.headers
    parts: list[Any] = pickle.loads(answer.content)
    return parts


def main(argv: list[str]) -> int:
    url, out = argv
    parts = fetch(url)
    np.save(out, decode(parts))
    print(json.dumps(parts[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
