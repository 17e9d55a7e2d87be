"""STINS, the MAX IV standard stream: encode and parse its three messages.

Shared by the generator, the streamers, the receiver and its forwarder, so that
every producer and consumer agrees on one definition. Part 0 of every message
is UTF-8 JSON with ``htype`` and an integer ``msg_number``; see
docs/protocols.md#stins. JSON goes through orjson: on 20 kB frames the standard
library's parser alone took a tenth of the receiver's time per frame. Headers are validated fully (pydantic); images, the hot path, by
the few fields the receiver uses. Unknown extra fields are kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from protocols import bslz4
from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image, Message, SeriesEnd, SeriesStart, StackedImage

COMPRESSIONS = ("none", "bslz4", "cbf", "mono12p", "mono12packed")
"""cbf (a whole Pilatus CBF file), mono12p (GenICam 12-bit packed, an ORCA's) and
mono12packed (Andor's 12-bit packing) are decoded by the receiver's transforms
(receiver/transforms); their size is checked there."""


class HeaderFields(BaseModel):
    """``{"htype": "header", "msg_number": 0, "filename": "/data/scan_001.h5"}``"""

    model_config = ConfigDict(extra="allow")
    htype: StrictStr
    msg_number: StrictInt
    filename: StrictStr


def _dumps(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_header(
    msg_number: int, filename: str, meta: dict[str, Any] | None = None, **extra: Any
) -> list[Buffer]:
    """A header message; ``meta`` (the optional 2nd part) goes to the NXdetector group."""
    parts: list[Buffer] = [
        _dumps({"htype": "header", "msg_number": msg_number, "filename": filename, **extra})
    ]
    if meta is not None:
        parts.append(_dumps(meta))
    return parts


def encode_image(
    msg_number: int,
    frame: int,
    blob: Buffer,
    shape: Sequence[int],
    dtype: str | np.dtype,
    compression: str = "none",
    **extra: Any,
) -> list[Buffer]:
    """An image message; ``blob`` is sent as is (raw C-order pixels or a bslz4 chunk)."""
    fields = {
        "htype": "image",
        "msg_number": msg_number,
        "frame": frame,
        "shape": list(shape),
        "type": _type_name(np.dtype(dtype)),
        "compression": compression,
        **extra,
    }
    return [_dumps(fields), blob]


def _type_name(dtype: np.dtype) -> str:
    """``uint16`` for native little-endian types, the explicit ``>u2`` form otherwise."""
    return dtype.name if dtype.byteorder in "=|<" else dtype.str


def encode_series_end(msg_number: int, **extra: Any) -> list[Buffer]:
    """The end-of-series message."""
    return [_dumps({"htype": "series_end", "msg_number": msg_number, **extra})]


def encode(message: Message, msg_number: int) -> list[Buffer]:
    """Re-encode a parsed message under a new ``msg_number`` (the forwarder's numbering)."""
    fields = {k: v for k, v in message.fields.items() if k != "msg_number"}
    if isinstance(message, SeriesStart):
        fields.pop("filename", None)
        fields.pop("htype", None)
        return encode_header(msg_number, message.filename, message.meta or None, **fields)
    if isinstance(message, Image):
        for key in ("htype", "frame", "shape", "type", "compression", "discard"):
            fields.pop(key, None)
        if message.discard:
            fields["discard"] = True
        if type(message) is StackedImage:
            return _encode_stacked(message, msg_number, fields)
        return encode_image(
            msg_number,
            message.frame,
            message.data,
            message.shape,
            message.dtype,
            message.compression,
            **fields,
        )
    fields.pop("htype", None)
    return encode_series_end(msg_number, **fields)


def _encode_stacked(image: StackedImage, msg_number: int, fields: dict[str, Any]) -> list[Buffer]:
    """One part per plane, as multi-module STINS streams carry a stack: ``chunks`` [1, H, W]."""
    fields["chunks"] = [1, *image.shape[1:]]
    chunks = image.chunks()
    parts = encode_image(
        msg_number, image.frame, chunks[0], image.shape, image.dtype, image.compression, **fields
    )
    return [*parts, *chunks[1:]]


def _load_json(part: Buffer, what: str) -> Any:
    try:
        return orjson.loads(part)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"{what} is not valid JSON: {exc}") from None


def parse(parts: Sequence[Buffer]) -> Message:
    """Parse the parts of one STINS message; raise :class:`MalformedMessage` naming the fault."""
    if not parts:
        raise MalformedMessage("empty message")
    return _parse_fields(_load_json(parts[0], "part 0"), parts)


def parse_module(parts: Sequence[Buffer]) -> Message:
    """One message of one module's stream of a multi-module detector (XSpectrum Lambda).

    As :func:`parse`, except that an image announcing the stack of all
    modules - ``shape`` [K, H, W] with ``chunks`` [1, H, W], its one blob being
    this module's plane, as MAX IV's Lambda streamers send it - is read as
    this module's H x W image. A plain [H, W] image is taken as it is.
    """
    if not parts:
        raise MalformedMessage("empty message")
    fields = _load_json(parts[0], "part 0")
    if isinstance(fields, dict) and "chunks" in fields and fields.get("htype") == "image":
        fields = _module_plane(fields)
    return _parse_fields(fields, parts)


def _module_plane(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a module's image announced as its plane of the stack, as its own."""
    shape, chunks = fields.get("shape"), fields.get("chunks")
    if isinstance(shape, list) and len(shape) == 3 and chunks == [1, *shape[1:]]:
        plane = {key: value for key, value in fields.items() if key != "chunks"}
        plane["shape"] = shape[1:]
        return plane
    seq = fields.get("msg_number")
    raise MalformedMessage(
        f"image: a module's frame is announced as shape [H, W], or [K, H, W] with chunks "
        f"[1, H, W]; got shape {shape!r} with chunks {chunks!r}",
        seq=seq if type(seq) is int else None,
    )


def _parse_fields(fields: Any, parts: Sequence[Buffer]) -> Message:
    if not isinstance(fields, dict):
        raise MalformedMessage(f"part 0 must be a JSON object, got {type(fields).__name__}")
    seq = fields.get("msg_number")
    if type(seq) is not int:
        raise MalformedMessage(f"field 'msg_number' must be an integer, got {seq!r}")
    htype = fields.get("htype")
    try:
        if htype == "image":
            return _parse_image(fields, parts, seq)
        if htype == "header":
            return _parse_header(fields, parts, seq)
        if htype == "series_end":
            return SeriesEnd(seq=seq, fields=fields)
    except MalformedMessage as exc:
        exc.seq = seq
        raise
    raise MalformedMessage(
        f"unknown htype {htype!r} (expected header, image or series_end)", seq=seq
    )


def _parse_header(fields: dict[str, Any], parts: Sequence[Buffer], seq: int) -> SeriesStart:
    try:
        HeaderFields.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors()
        )
        raise MalformedMessage(f"header: {problems}") from None
    meta: dict[str, Any] = {}
    if len(parts) > 1:
        meta = _load_json(parts[1], "header part 1 (metadata)")
        if not isinstance(meta, dict):
            raise MalformedMessage("header part 1 (metadata) must be a JSON object")
    return SeriesStart(seq=seq, filename=fields["filename"], meta=meta, fields=fields)


def _parse_image(fields: dict[str, Any], parts: Sequence[Buffer], seq: int) -> Image:
    frame = fields.get("frame")
    if type(frame) is not int or frame < 0:
        raise MalformedMessage(f"image: field 'frame' must be an integer >= 0, got {frame!r}")
    shape = fields.get("shape")
    if not isinstance(shape, list) or not shape or any(type(n) is not int or n <= 0 for n in shape):
        raise MalformedMessage(
            f"image: field 'shape' must be a list of positive integers, got {shape!r}"
        )
    try:
        if not isinstance(fields.get("type"), str):
            raise TypeError
        dtype = np.dtype(fields["type"])
    except TypeError:
        raise MalformedMessage(
            f"image: field 'type' must be a numpy dtype name such as 'uint16', got {fields.get('type')!r}"
        ) from None
    if dtype.kind not in "uif":
        raise MalformedMessage(f"image: unsupported pixel type {dtype.name!r}")
    compression = fields.get("compression")
    if compression not in COMPRESSIONS:
        raise MalformedMessage(
            f"image: unknown compression {compression!r} (expected one of {', '.join(COMPRESSIONS)})"
        )
    if len(parts) < 2:
        raise MalformedMessage("image: the data part is missing")
    if _is_stack(fields, shape, parts):
        return _parse_stack(fields, parts, seq, frame, dtype, compression)
    data = parts[1]
    image = Image(
        seq=seq,
        frame=frame,
        shape=tuple(shape),
        dtype=dtype,
        compression=compression,
        data=data,
        discard=bool(fields.get("discard", False)),
        fields=fields,
    )
    check_blob_size(image)
    return image


def _is_stack(fields: dict[str, Any], shape: list[int], parts: Sequence[Buffer]) -> bool:
    """A stack of planes, one part each: ``shape`` [K, H, W], ``chunks`` [1, H, W], K parts."""
    return (
        len(shape) == 3
        and fields.get("chunks") == [1, *shape[1:]]
        and len(parts) == shape[0] + 1
        and shape[0] > 1
    )


def _parse_stack(
    fields: dict[str, Any],
    parts: Sequence[Buffer],
    seq: int,
    frame: int,
    dtype: np.dtype,
    compression: str,
) -> StackedImage:
    """A multi-module frame (a forwarded stack, MAX IV's multi-part images): one chunk per plane.

    The planes are joined into one buffer (a copy), as :class:`StackedImage` holds them.
    """
    shape = tuple(fields["shape"])
    chunks = [memoryview(part).cast("B") for part in parts[1:]]
    for k, chunk in enumerate(chunks):
        plane = Image(seq=seq, frame=frame, shape=shape[1:], dtype=dtype, compression=compression,
                      data=chunk)  # fmt: skip
        try:
            check_blob_size(plane)
        except MalformedMessage as exc:
            raise MalformedMessage(f"{exc} (plane {k} of the stack)", seq=seq) from None
    return StackedImage(
        seq=seq,
        frame=frame,
        shape=shape,
        dtype=dtype,
        compression=compression,
        data=b"".join(chunks),
        discard=bool(fields.get("discard", False)),
        fields=fields,
        chunk_sizes=tuple(chunk.nbytes for chunk in chunks),
    )


def check_blob_size(image: Image) -> None:
    """Raise :class:`MalformedMessage` unless the blob fits the announced shape, type and compression."""
    size = len(image.data)
    if image.compression in ("cbf", "mono12p", "mono12packed"):
        return
    if image.compression == "none":
        if size != image.nbytes:
            raise MalformedMessage(
                f"image: data part has {size} bytes but shape {list(image.shape)} of "
                f"{image.dtype.name} needs {image.nbytes}"
            )
        return
    try:
        bslz4.check_blocks(image.data, math.prod(image.shape), image.dtype.itemsize)
    except ValueError as exc:
        raise MalformedMessage(f"image: {exc}") from None
