"""Dectris stream v1, the Eiger's SIMPLON 1.8 "legacy" stream: encode and parse.

Multipart messages of JSON and binary parts (see docs/protocols.md#dectris-stream-v1),
checked against the real capture in ``tests/data``:

- ``dheader-1.0``: part 0 ``{"htype", "series", "header_detail"}``; with
  ``basic`` or ``all`` part 1 is the detector configuration (``count_time``,
  ``nimages``, ``ntrigger``, ... about 50 keys); with ``all`` three pairs of a
  JSON header and a blob follow (flatfield, pixel mask, countrate table); the
  last part, when set through the REST API, is the ``header_appendix``. MAX IV
  puts JSON there: ``{"filename": "scan_001.h5", "rotate": 0}``.
- ``dimage-1.0``: part 0 ``{"htype", "series", "frame", "hash"}`` (frames
  count from 0; ``hash`` is the MD5 of part 1 as sent), part 1
  ``{"htype": "dimage_d-1.0", "shape": [width, height], "type", "encoding",
  "size"}`` (x fastest: reversed for numpy), part 2 the blob (``bs32-lz4<``:
  a bslz4 chunk with its 12-byte header), part 3 ``dconfig-1.0`` times in ns,
  an optional part 4 the ``image_appendix``.
- ``dseries_end-1.0``: ``{"htype", "series"}``.

The stream has no stream-wide message number: messages are numbered per
series (``series`` is the key, the header is at 0 and frame n at n + 1) and
the series reorderer restores their order. The configuration goes to the
NXdetector group (``count_time`` is NeXus' exposure time); the flatfield,
pixel mask and countrate table of ``header_detail`` ``all`` are checked but
not stored (several MB per series). Headers are validated fully, images by
the fields the receiver uses; blobs are never decompressed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image, Message, SeriesEnd, SeriesStart
from protocols.stins import check_blob_size

HEADER = "dheader-1.0"
IMAGE = "dimage-1.0"
IMAGE_DATA = "dimage_d-1.0"
IMAGE_TIMES = "dconfig-1.0"
END = "dseries_end-1.0"

DETAIL_PARTS = {"none": 1, "basic": 2, "all": 8}
"""Parts of a header before the optional ``header_appendix``, per ``header_detail``."""

TABLES = (
    ("dflatfield-1.0", "flatfield"),
    ("dpixelmask-1.0", "pixel_mask"),
    ("dcountrate_table-1.0", "countrate_table"),
)
"""The (htype, name) of the three tables that ``header_detail`` ``all`` adds, in order."""

BSLZ4_ENCODINGS = {"bs8-lz4<": 1, "bs16-lz4<": 2, "bs32-lz4<": 4}
RAW_ENCODING = "<"
LZ4_ENCODING = "lz4<"


class HeaderFields(BaseModel):
    """``{"htype": "dheader-1.0", "series": 14, "header_detail": "all"}``"""

    model_config = ConfigDict(extra="allow")
    htype: Literal["dheader-1.0"]
    series: StrictInt
    header_detail: Literal["all", "basic", "none"]


class DetectorConfig(BaseModel):
    """Part 1 of a header; only the keys the receiver uses are checked, all are kept.

    ``{"count_time": 0.9999999, "nimages": 100000, "ntrigger": 1, "trigger_mode":
    "ints", "x_pixels_in_detector": 1030, "y_pixels_in_detector": 1065, ...}``
    """

    model_config = ConfigDict(extra="allow")
    count_time: float | None = None
    nimages: StrictInt | None = Field(None, ge=0)
    ntrigger: StrictInt | None = Field(None, ge=0)


class Appendix(BaseModel):
    """The ``header_appendix`` as MAX IV writes it: ``{"filename": "...", "rotate": 0}``."""

    model_config = ConfigDict(extra="allow")
    filename: str = ""
    rotate: StrictInt = Field(0, description="quarter turns, as MAX IV's receiver applies them")


def _dumps(fields: Mapping[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)


def _type_name(dtype: np.dtype) -> str:
    return np.dtype(dtype).name


def encode_header(
    series: int,
    detail: str = "basic",
    config: Mapping[str, Any] | None = None,
    appendix: str | Mapping[str, Any] | None = None,
    tables: Mapping[str, np.ndarray] | None = None,
) -> list[bytes]:
    """A ``dheader-1.0`` message as a detector sends it for ``header_detail`` ``detail``.

    ``config`` is part 1 (``basic`` and ``all``); ``tables`` maps ``flatfield``,
    ``pixel_mask`` and ``countrate_table`` to arrays in numpy (C) order
    (``all`` only); ``appendix`` is the ``header_appendix`` (a mapping is sent
    as JSON), left out when None.
    """
    if detail not in DETAIL_PARTS:
        raise ValueError(f"header_detail must be one of {', '.join(DETAIL_PARTS)}, got {detail!r}")
    parts = [_dumps({"header_detail": detail, "htype": HEADER, "series": series})]
    if detail != "none":
        parts.append(_dumps(dict(config or {})))
    if detail == "all":
        if tables is None:
            raise ValueError(
                "header_detail 'all' needs the flatfield, pixel_mask and countrate_table"
            )
        for htype, name in TABLES:
            table = np.ascontiguousarray(tables[name])
            shape = list(table.shape[::-1])
            parts.append(_dumps({"htype": htype, "shape": shape, "type": _type_name(table.dtype)}))
            parts.append(table.tobytes())
    if appendix is not None:
        parts.append(appendix.encode() if isinstance(appendix, str) else _dumps(dict(appendix)))
    return parts


def encode_image(
    series: int,
    frame: int,
    blob: Buffer,
    shape: Sequence[int],
    dtype: str | np.dtype,
    compression: str = "bslz4",
    times: tuple[int, int, int] = (0, 0, 0),
    appendix: str | None = None,
) -> list[Buffer]:
    """A ``dimage-1.0`` message; ``shape`` is numpy's (height, width), sent reversed.

    ``times`` are (start_time, stop_time, real_time) in ns; ``blob`` is sent
    as it is (a bslz4 chunk with its 12-byte header, or raw pixels).
    """
    dtype = np.dtype(dtype)
    if compression == "bslz4":
        encoding = f"bs{dtype.itemsize * 8}-lz4<"
    elif compression == "none":
        encoding = RAW_ENCODING
    else:
        raise ValueError(f"Dectris stream v1 sends bslz4 or raw frames, not {compression!r}")
    data_header = _dumps(
        {
            "encoding": encoding,
            "htype": IMAGE_DATA,
            "shape": list(shape)[::-1],
            "size": memoryview(blob).nbytes,
            "type": _type_name(dtype),
        }
    )
    start, stop, real = times
    parts: list[Buffer] = [
        _dumps(
            {
                "frame": frame,
                "hash": hashlib.md5(data_header).hexdigest(),
                "htype": IMAGE,
                "series": series,
            }
        ),
        data_header,
        blob,
        _dumps({"htype": IMAGE_TIMES, "real_time": real, "start_time": start, "stop_time": stop}),
    ]
    if appendix is not None:
        parts.append(appendix.encode())
    return parts


def encode_series_end(series: int) -> list[bytes]:
    """The ``dseries_end-1.0`` message."""
    return [_dumps({"htype": END, "series": series})]


def parse(parts: Sequence[Buffer]) -> Message:
    """Parse one stream v1 message; raise :class:`MalformedMessage` naming the fault."""
    if not parts:
        raise MalformedMessage("empty message")
    fields = _load_json(parts[0], "part 0")
    if not isinstance(fields, dict):
        raise MalformedMessage(f"part 0 must be a JSON object, got {type(fields).__name__}")
    htype = fields.get("htype")
    if htype not in (IMAGE, HEADER, END):
        raise MalformedMessage(
            f"unknown htype {htype!r} (expected {HEADER}, {IMAGE} or {END}: is the stream "
            "Dectris stream v1, as the receiver's protocol setting says?)"
        )
    series = fields.get("series")
    if type(series) is not int:
        raise MalformedMessage(f"{htype}: field 'series' must be an integer, got {series!r}")
    if htype == IMAGE:
        return _parse_image(fields, parts, series)
    if htype == HEADER:
        try:
            return _parse_header(fields, parts, series)
        except MalformedMessage as exc:
            exc.seq, exc.series = 0, series
            raise
    return SeriesEnd(seq=-1, fields=fields, series=series)


def _load_json(part: Buffer, what: str) -> Any:
    try:
        return orjson.loads(part)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"{what} is not valid JSON: {exc}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())


def _parse_header(fields: dict[str, Any], parts: Sequence[Buffer], series: int) -> SeriesStart:
    try:
        header = HeaderFields.model_validate(fields)
    except ValidationError as exc:
        raise MalformedMessage(f"{HEADER}: {_problems(exc)}") from None
    detail = header.header_detail
    expected = DETAIL_PARTS[detail]
    if len(parts) not in (expected, expected + 1):
        raise MalformedMessage(
            f"{HEADER} with header_detail '{detail}' has {expected} parts "
            f"({expected + 1} with the header_appendix), got {len(parts)}"
        )
    meta: dict[str, Any] = {}
    start_fields: dict[str, Any] = {"series": series, "header_detail": detail}
    frames = None
    if detail != "none":
        meta = _load_json(parts[1], f"{HEADER} part 1 (detector configuration)")
        if not isinstance(meta, dict):
            raise MalformedMessage(
                f"{HEADER} part 1 (detector configuration) must be a JSON object"
            )
        try:
            config = DetectorConfig.model_validate(meta)
        except ValidationError as exc:
            raise MalformedMessage(f"{HEADER} detector configuration: {_problems(exc)}") from None
        if config.count_time is not None:
            start_fields["exposure_time"] = config.count_time
        if config.nimages is not None:
            frames = config.nimages * (1 if config.ntrigger is None else config.ntrigger)
    if detail == "all":
        for index, (htype, name) in enumerate(TABLES):
            _check_table(parts[2 + 2 * index], parts[3 + 2 * index], htype, name)
    filename = ""
    if len(parts) == expected + 1:
        filename, rotate, text = _appendix(parts[-1])
        meta["header_appendix"] = text
        start_fields["rotate"] = rotate
    return SeriesStart(
        seq=0, filename=filename, meta=meta, fields=start_fields, series=series, frames=frames
    )


def _check_table(head: Buffer, blob: Buffer, htype: str, name: str) -> None:
    """A table's JSON header and blob must agree; the table itself is not kept."""
    info = _load_json(head, f"{HEADER} {name} header")
    if not isinstance(info, dict) or info.get("htype") != htype:
        raise MalformedMessage(f"{HEADER}: expected the {htype} part, got {str(info)[:80]!r}")
    shape = info.get("shape")
    if not isinstance(shape, list) or any(type(n) is not int or n < 0 for n in shape):
        raise MalformedMessage(f"{HEADER} {name}: 'shape' must be a list of sizes, got {shape!r}")
    dtype = _dtype(info.get("type"), f"{HEADER} {name}")
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if memoryview(blob).nbytes != needed:
        raise MalformedMessage(
            f"{HEADER} {name}: blob has {memoryview(blob).nbytes} bytes but shape {shape} of "
            f"{dtype.name} needs {needed}"
        )


def _appendix(part: Buffer) -> tuple[str, int, str]:
    """(file name, rotation, text) of a ``header_appendix``; plain text names no file."""
    try:
        text = bytes(part).decode()
    except UnicodeDecodeError:
        raise MalformedMessage(f"{HEADER}: header_appendix is not UTF-8 text") from None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "", 0, text
    if not isinstance(value, dict):
        return "", 0, text
    try:
        appendix = Appendix.model_validate(value)
    except ValidationError as exc:
        raise MalformedMessage(f"{HEADER} header_appendix: {_problems(exc)}") from None
    return appendix.filename, appendix.rotate, text


def _dtype(name: Any, what: str) -> np.dtype:
    try:
        if not isinstance(name, str):
            raise TypeError
        dtype = np.dtype(name)
    except TypeError:
        raise MalformedMessage(
            f"{what}: 'type' must be a pixel type such as 'uint32', got {name!r}"
        ) from None
    if dtype.kind not in "uif":
        raise MalformedMessage(f"{what}: unsupported pixel type {dtype.name!r}")
    return dtype


def _parse_image(fields: dict[str, Any], parts: Sequence[Buffer], series: int) -> Image:
    frame = fields.get("frame")
    if type(frame) is not int or frame < 0:
        raise MalformedMessage(f"{IMAGE}: field 'frame' must be an integer >= 0, got {frame!r}")
    try:
        return _image(fields, parts, series, frame)
    except MalformedMessage as exc:
        exc.seq, exc.series = frame + 1, series
        raise


def _image(fields: dict[str, Any], parts: Sequence[Buffer], series: int, frame: int) -> Image:
    if len(parts) < 3:
        raise MalformedMessage(
            f"{IMAGE} frame {frame}: expected the data header and data parts, got {len(parts)} parts"
        )
    info = _load_json(parts[1], f"{IMAGE} frame {frame} part 1")
    if not isinstance(info, dict) or info.get("htype") != IMAGE_DATA:
        raise MalformedMessage(f"{IMAGE} frame {frame}: part 1 must be the {IMAGE_DATA} header")
    shape = info.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or any(type(n) is not int or n <= 0 for n in shape)
    ):
        raise MalformedMessage(
            f"{IMAGE_DATA} frame {frame}: 'shape' must be [width, height], got {shape!r}"
        )
    dtype = _dtype(info.get("type"), f"{IMAGE_DATA} frame {frame}")
    compression = _compression(info.get("encoding"), dtype, frame)
    data = parts[2]
    size = info.get("size")
    if size is not None and size != len(data):
        raise MalformedMessage(
            f"{IMAGE_DATA} frame {frame}: 'size' announces {size} bytes, the data part has {len(data)}"
        )
    if len(parts) > 3:
        times = _load_json(parts[3], f"{IMAGE} frame {frame} part 3 ({IMAGE_TIMES})")
        if isinstance(times, dict):
            for key in ("start_time", "stop_time", "real_time"):
                if key in times:
                    fields[key] = times[key]
    if len(parts) > 4:
        fields["image_appendix"] = bytes(parts[4]).decode(errors="replace")
    image = Image(
        seq=frame + 1,
        frame=frame,
        shape=(shape[1], shape[0]),
        dtype=dtype,
        compression=compression,
        data=data,
        fields=fields,
        series=series,
    )
    check_blob_size(image)
    return image


def _compression(encoding: Any, dtype: np.dtype, frame: int) -> str:
    if not isinstance(encoding, str):
        raise MalformedMessage(
            f"{IMAGE_DATA} frame {frame}: 'encoding' must be text, got {encoding!r}"
        )
    if encoding in BSLZ4_ENCODINGS:
        if BSLZ4_ENCODINGS[encoding] != dtype.itemsize:
            raise MalformedMessage(
                f"{IMAGE_DATA} frame {frame}: encoding {encoding!r} does not fit type {dtype.name}"
            )
        return "bslz4"
    if encoding == RAW_ENCODING:
        return "none"
    if encoding == LZ4_ENCODING:
        raise MalformedMessage(
            f"{IMAGE_DATA} frame {frame}: lz4 frames are not supported; set the detector's "
            "compression to bslz4"
        )
    raise MalformedMessage(
        f"{IMAGE_DATA} frame {frame}: unknown encoding {encoding!r} "
        f"(expected {', '.join(BSLZ4_ENCODINGS)} or {RAW_ENCODING!r})"
    )
