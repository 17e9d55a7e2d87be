"""The SLS detector software's (PSI) ZeroMQ stream, one module: encode and parse.

Every frame is two parts, a JSON header and the raw pixels; the end of an
acquisition is a header with ``"data": 0`` and no data part (see docs/protocols.md#sls-stream
and the "ZMQ: Json Header Format" page of slsDetectorPackage). Fields used:
``bitmode`` (8, 16 or 32 bits per pixel), ``shape`` ([x, y], x fastest:
reversed for numpy), ``size`` (bytes), ``frameIndex`` (from 0 in each
acquisition), ``frameNumber`` (the detector's running number), ``fileIndex``,
``fname``, ``progress`` (percent of the acquisition) and ``addJsonHeader``
(string pairs set with ``rx_jsonpara``).

The stream sends no header: the series reorderer asks :func:`opener` for one
when the first frame of an acquisition arrives. An acquisition is told from
the next by ``(fileIndex, frameNumber - frameIndex)``, the number of its
first frame. The file name is ``addJsonHeader["filename"]`` when set (as a
control system sets it), else ``fname``. The end marker names no
acquisition; it ends the oldest one still open. Several modules (one stream
each) are not matched yet: one stream is one detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import orjson

from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image, Message, SeriesEnd, SeriesStart
from protocols.stins import check_blob_size

JSON_VERSION = 4
DTYPES: dict[int, np.dtype[Any]] = {
    8: np.dtype("uint8"),
    16: np.dtype("uint16"),
    32: np.dtype("uint32"),
}
EXACT_PROGRESS_FRAMES = 1_000_000
"""``progress`` is printed with 6 significant digits: up to this many frames the
second-to-last frame of an acquisition never shows 100, so 100 marks the last."""


def _dumps(fields: Mapping[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_image(
    frame_index: int,
    blob: Buffer,
    shape: Sequence[int],
    dtype: str | np.dtype,
    *,
    frames: int,
    first_frame_number: int = 1,
    file_index: int = 0,
    fname: str = "",
    add_json_header: Mapping[str, str] | None = None,
) -> list[Buffer]:
    """One frame (``shape`` is numpy's (rows, columns)) of an acquisition of ``frames``."""
    dtype = np.dtype(dtype)
    header: dict[str, Any] = {
        "jsonversion": JSON_VERSION,
        "bitmode": dtype.itemsize * 8,
        "fileIndex": file_index,
        "detshape": [1, 1],
        "shape": [shape[1], shape[0]],
        "size": memoryview(blob).nbytes,
        "acqIndex": first_frame_number + frame_index,
        "frameIndex": frame_index,
        "progress": float(f"{100 * (frame_index + 1) / frames:.6g}"),
        "fname": fname,
        "data": 1,
        "completeImage": 1,
        "frameNumber": first_frame_number + frame_index,
        "expLength": 0,
        "packetNumber": 0,
        "detSpec1": 0,
        "timestamp": 0,
        "modId": 0,
        "row": 0,
        "column": 0,
        "detSpec2": 0,
        "detSpec3": 0,
        "detSpec4": 0,
        "detType": 0,
        "version": 1,
        "flipRows": 0,
        "quad": 0,
    }
    if add_json_header:
        header["addJsonHeader"] = dict(add_json_header)
    return [_dumps(header), blob]


def encode_end() -> list[bytes]:
    """The end-of-acquisition marker: a header with ``data`` 0 and no data part."""
    return [_dumps({"jsonversion": JSON_VERSION, "data": 0, "fname": "", "frameIndex": 0})]


def parse(parts: Sequence[Buffer]) -> Message:
    """Parse one SLS message; raise :class:`MalformedMessage` naming the fault."""
    if not parts:
        raise MalformedMessage("empty message")
    try:
        fields = orjson.loads(parts[0])
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"part 0 is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise MalformedMessage(f"part 0 must be a JSON object, got {type(fields).__name__}")
    data = fields.get("data")
    if data == 0:
        return SeriesEnd(seq=-1, fields=fields)
    if data != 1:
        raise MalformedMessage(
            f"field 'data' must be 1 (a frame) or 0 (the end), got {data!r}: is the stream an "
            "SLS detector stream, as the receiver's protocol setting says?"
        )
    index, number, file_index = (fields.get(k) for k in ("frameIndex", "frameNumber", "fileIndex"))
    if not (_count(index) and _count(number) and _count(file_index) and number >= index):
        raise MalformedMessage(
            "fields 'frameIndex', 'frameNumber' and 'fileIndex' must be integers >= 0 with "
            f"frameNumber >= frameIndex, got {index!r}, {number!r}, {file_index!r}"
        )
    series = (file_index, number - index)
    try:
        return _image(fields, parts, index, series)
    except MalformedMessage as exc:
        exc.seq, exc.series = index + 1, series
        raise


def _count(value: object) -> TypeGuard[int]:
    """True for an int >= 0 (not a bool: JSON's true is no frame number)."""
    return type(value) is int and value >= 0


def _image(
    fields: dict[str, Any], parts: Sequence[Buffer], index: int, series: tuple[int, int]
) -> Image:
    bitmode = fields.get("bitmode")
    if type(bitmode) is not int or bitmode not in DTYPES:
        raise MalformedMessage(
            f"frame {index}: bitmode {bitmode!r} is not supported (8, 16 or 32 bits per pixel)"
        )
    shape = fields.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or any(type(n) is not int or n <= 0 for n in shape)
    ):
        raise MalformedMessage(f"frame {index}: 'shape' must be [x, y] pixels, got {shape!r}")
    if len(parts) < 2:
        raise MalformedMessage(f"frame {index}: the data part is missing")
    data = parts[1]
    size = fields.get("size")
    if size is not None and size != len(data):
        raise MalformedMessage(
            f"frame {index}: 'size' announces {size} bytes, the data part has {len(data)}"
        )
    image = Image(
        seq=index + 1,
        frame=index,
        shape=(shape[1], shape[0]),
        dtype=DTYPES[bitmode],
        compression="none",
        data=data,
        fields=fields,
        series=series,
    )
    check_blob_size(image)
    return image


def opener(image: Image) -> SeriesStart:
    """The header of the acquisition ``image`` belongs to (the stream sends none)."""
    fields = image.fields
    extra = fields.get("addJsonHeader")
    extra = dict(extra) if isinstance(extra, dict) else {}
    fname = fields.get("fname") if isinstance(fields.get("fname"), str) else ""
    filename = extra.pop("filename", None)
    if not isinstance(filename, str):
        filename = fname
    if not isinstance(image.series, tuple):
        raise TypeError(f"an SLS frame's series is (file index, first frame), got {image.series!r}")
    file_index, first = image.series
    meta: dict[str, Any] = {
        "bit_depth_image": fields.get("bitmode"),
        "sls_detector_type": fields.get("detType"),
        "sls_file_name": fname,
        "sls_file_index": file_index,
        "sls_first_frame_number": first,
    }
    if extra:
        meta["sls_additional_json_header"] = extra
    return SeriesStart(
        seq=0,
        filename=filename,
        meta={k: v for k, v in meta.items() if v is not None},
        fields={"fname": fname, "fileIndex": file_index, "first_frame_number": first},
        series=image.series,
    )


def is_last_frame(image: Image) -> bool:
    """The last frame of a complete acquisition shows 100 % progress."""
    progress = image.fields.get("progress")
    return (
        isinstance(progress, int | float)
        and progress >= 100
        and image.frame < EXACT_PROGRESS_FRAMES
    )
