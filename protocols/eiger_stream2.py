"""Dectris stream v2, the Eiger's CBOR stream: encode and parse.

One-part messages, each a CBOR map behind the self-describe tag 55799 (see
docs/protocols.md#dectris-stream-v2 and Dectris' ``stream_v2`` documentation), checked
against the real capture in ``tests/data``:

- ``start``: ``series_id``, ``series_unique_id``, ``channels``, ``count_time``,
  ``number_of_images``, ``threshold_energy`` (channel -> eV), ``user_data``
  (the ``header_appendix``: MAX IV puts JSON with ``filename`` there), the
  detector configuration and, depending on the detector's settings, the
  flatfield, pixel mask and countrate tables.
- ``image``: ``series_id``, ``image_id`` (from 0), ``start_time`` /
  ``stop_time`` / ``real_time`` as [numerator, denominator], and ``data``:
  channel -> tag 40 ``[[height, width], typed array]``, where the typed array
  (RFC 8746 tags 64-87, e.g. 70 = uint32 little-endian) holds raw pixels or
  Dectris' tag 56500 ``["bslz4", element size, chunk]`` (a bslz4 chunk with
  its 12-byte header).
- ``end``: ``series_id``, ``series_unique_id``.

Messages are numbered per series (the key is ``(series_id,
series_unique_id)``, so a detector restart that counts ids from 1 again
still makes new keys); the series reorderer restores their order. One
channel gives frames of ``[height, width]``; several thresholds become the
first axis of the frame (``[channels, height, width]``), one chunk each, as
they came. Compressed data is never decompressed; cbor2 copies each blob out
of the message once, the price of decoding CBOR in Python.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from protocols import bslz4
from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image, Message, SeriesEnd, SeriesStart, StackedImage

SELF_DESCRIBE = b"\xd9\xd9\xf7"
MULTI_DIM_ARRAY = 40
COMPRESSED = 56500

TYPED_ARRAYS = {
    64: "u1",
    65: ">u2",
    66: ">u4",
    67: ">u8",
    68: "u1",
    69: "<u2",
    70: "<u4",
    71: "<u8",
    72: "i1",
    73: ">i2",
    74: ">i4",
    75: ">i8",
    77: "<i2",
    78: "<i4",
    79: "<i8",
    80: ">f2",
    81: ">f4",
    82: ">f8",
    84: "<f2",
    85: "<f4",
    86: "<f8",
}
"""RFC 8746 typed-array tags and their element types (128-bit floats left out)."""

TAG_OF_DTYPE = {np.dtype(name): tag for tag, name in reversed(TYPED_ARRAYS.items())}

TABLES = ("flatfield", "pixel_mask", "countrate_correction_lookup_table")
"""Start-message tables that are checked but not stored (several MB per series)."""


@dataclass(frozen=True, slots=True)
class Compressed:
    """Tag 56500: a byte string compressed with ``algorithm``."""

    algorithm: Any
    elem_size: Any
    data: Any


@dataclass(frozen=True, slots=True)
class TypedArray:
    """An RFC 8746 typed array: ``payload`` is bytes or :class:`Compressed` bytes."""

    dtype: np.dtype
    payload: Any


@dataclass(frozen=True, slots=True)
class MultiDimArray:
    """Tag 40, a row-major multi-dimensional array: ``dims`` in C order."""

    dims: Any
    array: Any


def _multi_dim(value: Any) -> MultiDimArray:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise MalformedMessage("tag 40 must hold [dimensions, array]")
    return MultiDimArray(value[0], value[1])


def _compressed(value: Any) -> Compressed:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise MalformedMessage("tag 56500 must hold [algorithm, element size, data]")
    return Compressed(*value)


def _typed(dtype: np.dtype) -> Callable[[Any], TypedArray]:
    def decode(value: Any) -> TypedArray:
        return TypedArray(dtype, value)

    return decode


DECODERS: dict[int, Callable[[Any], Any]] = {
    MULTI_DIM_ARRAY: _multi_dim,
    COMPRESSED: _compressed,
    **{tag: _typed(np.dtype(name)) for tag, name in TYPED_ARRAYS.items()},
}


def _tag_hook(first: Any, second: Any) -> Any:
    """Decode the tags above, inner ones first; others stay :class:`cbor2.CBORTag`.

    cbor2 5 calls ``hook(decoder, tag)`` and cbor2 6 ``hook(tag, immutable)``.
    """
    tag = first if isinstance(first, cbor2.CBORTag) else second
    decoder = DECODERS.get(tag.tag)
    return tag if decoder is None else decoder(tag.value)


class StartFields(BaseModel):
    """The keys of a ``start`` message the receiver uses; every other key is kept.

    ``{"type": "start", "series_id": 16, "series_unique_id": "01HRCJF8...",
    "channels": ["threshold_1"], "count_time": 0.9999999, "number_of_images": 10,
    "threshold_energy": {"threshold_1": 4000.0}, "user_data": "{...}", ...}``
    """

    model_config = ConfigDict(extra="allow")
    series_id: StrictInt
    series_unique_id: StrictStr = ""
    number_of_images: StrictInt | None = Field(None, ge=0)
    channels: list[StrictStr] | None = None
    count_time: float | None = None
    threshold_energy: dict[str, float] | None = None


class UserData(BaseModel):
    """``user_data`` as MAX IV writes it: ``{"filename": "...", "rotate": 0}``."""

    model_config = ConfigDict(extra="allow")
    filename: str = ""
    rotate: StrictInt = 0


def series_key(series_id: int, unique_id: str) -> tuple[int, str]:
    """The key that tells series apart: ids restart at 1 when the detector restarts."""
    return (series_id, unique_id)


# Encoding (the generator, the replay tool and the Eiger simulator send these).


def _message(fields: Mapping[str, Any]) -> bytes:
    return SELF_DESCRIBE + cbor2.dumps(dict(fields))


def typed_array(blob: Buffer, dtype: str | np.dtype, compression: str = "none") -> cbor2.CBORTag:
    """``blob`` as a typed array of ``dtype``, wrapped in tag 56500 when it is a bslz4 chunk."""
    dtype = np.dtype(dtype)
    payload: Any = bytes(blob)
    if compression == "bslz4":
        payload = cbor2.CBORTag(COMPRESSED, ["bslz4", dtype.itemsize, payload])
    elif compression != "none":
        raise ValueError(f"Dectris stream v2 sends bslz4 or raw frames, not {compression!r}")
    if dtype not in TAG_OF_DTYPE:
        raise ValueError(f"no RFC 8746 typed-array tag for {dtype}")
    return cbor2.CBORTag(TAG_OF_DTYPE[dtype], payload)


def multi_dim_array(
    blob: Buffer, shape: Sequence[int], dtype: str | np.dtype, compression: str = "none"
) -> cbor2.CBORTag:
    """Tag 40 ``[[dims], typed array]`` in C order."""
    return cbor2.CBORTag(MULTI_DIM_ARRAY, [list(shape), typed_array(blob, dtype, compression)])


def encode_start(
    series_id: int,
    unique_id: str,
    *,
    number_of_images: int,
    shape: Sequence[int],
    channels: Sequence[str] = ("threshold_1",),
    user_data: Any = "",
    config: Mapping[str, Any] | None = None,
) -> list[bytes]:
    """A ``start`` message; ``config`` adds detector keys (count_time, threshold_energy...)."""
    fields: dict[str, Any] = {
        "type": "start",
        "series_id": series_id,
        "series_unique_id": unique_id,
        "arm_date": datetime.datetime.now(datetime.UTC),
        "channels": list(channels),
        "image_size_x": shape[-1],
        "image_size_y": shape[-2],
        "number_of_images": number_of_images,
        "user_data": user_data,
    }
    fields.update(config or {})
    return [_message(fields)]


def encode_image(
    series_id: int,
    unique_id: str,
    image_id: int,
    channels: Mapping[str, Buffer],
    shape: Sequence[int],
    dtype: str | np.dtype,
    compression: str = "bslz4",
    times: tuple[int, int, int] = (0, 0, 0),
    time_base: int = 100_000_000,
    series_date: datetime.datetime | None = None,
) -> list[bytes]:
    """An ``image`` message with one blob per channel; ``times`` in units of ``1/time_base`` s.

    ``series_date`` (the arm time, as a detector sends it) is left out when None.
    """
    start, stop, real = times
    fields: dict[str, Any] = {
        "type": "image",
        "series_id": series_id,
        "series_unique_id": unique_id,
        "image_id": image_id,
        "real_time": [real, time_base],
        "start_time": [start, time_base],
        "stop_time": [stop, time_base],
        "data": {
            name: multi_dim_array(blob, shape, dtype, compression)
            for name, blob in channels.items()
        },
    }
    if series_date is not None:
        fields["series_date"] = series_date
    return [_message(fields)]


def encode_end(series_id: int, unique_id: str) -> list[bytes]:
    """The ``end`` message."""
    return [_message({"type": "end", "series_id": series_id, "series_unique_id": unique_id})]


# Parsing.


def decode(part: Buffer) -> Any:
    """One CBOR message with the typed-array, multi-dimensional and compression tags decoded."""
    try:
        return cbor2.loads(part, tag_hook=_tag_hook)
    except MalformedMessage:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc.__cause__, MalformedMessage):
            raise exc.__cause__ from None
        raise MalformedMessage(
            f"message is not valid CBOR ({exc}): is the stream Dectris stream v2, as the "
            "receiver's protocol setting says?"
        ) from None


def parse(parts: Sequence[Buffer]) -> Message:
    """Parse one stream v2 message; raise :class:`MalformedMessage` naming the fault."""
    if len(parts) != 1:
        raise MalformedMessage(f"stream v2 messages have one part, got {len(parts)}")
    message = decode(parts[0])
    if not isinstance(message, Mapping):
        raise MalformedMessage(f"message must be a CBOR map, got {type(message).__name__}")
    kind = message.get("type")
    if kind not in ("start", "image", "end"):
        raise MalformedMessage(f"unknown message type {kind!r} (expected start, image or end)")
    series_id = message.get("series_id")
    if type(series_id) is not int:
        raise MalformedMessage(f"{kind}: field 'series_id' must be an integer, got {series_id!r}")
    unique_id = message.get("series_unique_id", "")
    if not isinstance(unique_id, str):
        raise MalformedMessage(f"{kind}: field 'series_unique_id' must be text, got {unique_id!r}")
    key = series_key(series_id, unique_id)
    ids = {"series_id": series_id, "series_unique_id": unique_id}
    if kind == "image":
        return _parse_image(message, key, ids)
    if kind == "start":
        try:
            return _parse_start(message, key, ids)
        except MalformedMessage as exc:
            exc.seq, exc.series = 0, key
            raise
    return SeriesEnd(seq=-1, fields=ids, series=key)


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())


def _parse_start(
    message: Mapping[str, Any], key: tuple[int, str], ids: dict[str, Any]
) -> SeriesStart:
    try:
        start = StartFields.model_validate(dict(message))
    except ValidationError as exc:
        raise MalformedMessage(f"start: {_problems(exc)}") from None
    filename, rotate, user_text = _user_data(message.get("user_data"))
    meta: dict[str, Any] = {}
    for name, value in message.items():
        if name in ("type", "user_data", "threshold_energy", *TABLES):
            continue
        plain = _plain(value)
        if plain is not None:
            meta[name] = plain
    if start.threshold_energy is not None:
        order = start.channels or list(start.threshold_energy)
        energies = [start.threshold_energy[c] for c in order if c in start.threshold_energy]
        meta["threshold_energy"] = energies[0] if len(energies) == 1 else energies
    if user_text:
        meta["user_data"] = user_text
    fields: dict[str, Any] = {**ids, "rotate": rotate}
    if start.count_time is not None:
        fields["exposure_time"] = start.count_time
    if start.channels is not None:
        fields["channels"] = start.channels
    return SeriesStart(
        seq=0,
        filename=filename,
        meta=meta,
        fields=fields,
        series=key,
        frames=start.number_of_images,
    )


def _user_data(value: Any) -> tuple[str, int, str]:
    """(file name, rotation, text) from ``user_data``: JSON text or a map."""
    if value is None or value == "":
        return "", 0, ""
    if isinstance(value, str):
        text = value
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return "", 0, text
    else:
        plain = _plain(value)
        try:
            text = orjson.dumps(plain).decode() if plain is not None else ""
        except TypeError as exc:  # orjson: integers beyond 64 bits, keys that are not text
            raise MalformedMessage(f"start user_data cannot be kept as JSON: {exc}") from None
        value = plain
    if not isinstance(value, dict):
        return "", 0, text
    try:
        user = UserData.model_validate(value)
    except ValidationError as exc:
        raise MalformedMessage(f"start user_data: {_problems(exc)}") from None
    return user.filename, user.rotate, text


def _plain(value: Any) -> Any:
    """A value HDF5 and JSON can hold: maps, lists, numbers, text; None for tagged data."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {str(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return None if any(v is None for v in items) else items
    return None


def _parse_image(message: Mapping[str, Any], key: tuple[int, str], ids: dict[str, Any]) -> Image:
    image_id = message.get("image_id")
    if type(image_id) is not int or image_id < 0:
        raise MalformedMessage(f"image: field 'image_id' must be an integer >= 0, got {image_id!r}")
    try:
        return _image(message, key, ids, image_id)
    except MalformedMessage as exc:
        exc.seq, exc.series = image_id + 1, key
        raise


def _image(
    message: Mapping[str, Any], key: tuple[int, str], ids: dict[str, Any], frame: int
) -> Image:
    data = message.get("data")
    if not isinstance(data, Mapping) or not data:
        raise MalformedMessage(f"image {frame}: 'data' must map channel names to arrays")
    planes = [_plane(name, value, frame) for name, value in data.items()]
    shape, dtype, compression, _ = planes[0]
    for name, (other_shape, other_dtype, other_compression, _) in zip(data, planes, strict=True):
        if (other_shape, other_dtype, other_compression) != (shape, dtype, compression):
            raise MalformedMessage(
                f"image {frame}: channel {name!r} is {list(other_shape)} {other_dtype} "
                f"{other_compression}, unlike the first channel ({list(shape)} {dtype} {compression})"
            )
    fields: dict[str, Any] = {**ids, "image_id": frame}
    for name in ("start_time", "stop_time", "real_time"):
        value = _plain(message.get(name))
        if value is not None:
            fields[name] = value
    if len(planes) > 1:
        fields["channels"] = list(data)
        blobs = [blob for *_, blob in planes]
        return StackedImage(
            seq=frame + 1,
            frame=frame,
            shape=(len(planes), *shape),
            dtype=dtype,
            compression=compression,
            data=b"".join(blobs),
            fields=fields,
            series=key,
            chunk_sizes=tuple(len(blob) for blob in blobs),
        )
    return Image(
        seq=frame + 1,
        frame=frame,
        shape=shape,
        dtype=dtype,
        compression=compression,
        data=planes[0][3],
        fields=fields,
        series=key,
    )


def _plane(name: str, value: Any, frame: int) -> tuple[tuple[int, ...], np.dtype, str, bytes]:
    """(shape, dtype, compression, blob) of one channel, checked against its chunk."""
    what = f"image {frame} channel {name!r}"
    if not isinstance(value, MultiDimArray):
        raise MalformedMessage(f"{what}: expected a tag 40 multi-dimensional array")
    dims = value.dims
    if (
        not isinstance(dims, list | tuple)
        or not dims
        or any(type(n) is not int or n <= 0 for n in dims)
    ):
        raise MalformedMessage(f"{what}: dimensions must be positive integers, got {dims!r}")
    shape = tuple(dims)
    if not isinstance(value.array, TypedArray):
        raise MalformedMessage(f"{what}: expected a typed array (RFC 8746 tags 64-87)")
    dtype = value.array.dtype
    payload = value.array.payload
    needed = math.prod(shape) * dtype.itemsize
    if isinstance(payload, bytes):
        if len(payload) != needed:
            raise MalformedMessage(
                f"{what}: {len(payload)} bytes but {list(shape)} of {dtype} needs {needed}"
            )
        return shape, dtype, "none", payload
    if not isinstance(payload, Compressed):
        raise MalformedMessage(f"{what}: the typed array holds neither bytes nor tag 56500")
    if payload.algorithm == "lz4":
        raise MalformedMessage(
            f"{what}: lz4 frames are not supported; set the detector's compression to bslz4"
        )
    if payload.algorithm != "bslz4":
        raise MalformedMessage(f"{what}: unknown compression {payload.algorithm!r}")
    if payload.elem_size != dtype.itemsize or not isinstance(payload.data, bytes):
        raise MalformedMessage(
            f"{what}: bslz4 element size {payload.elem_size!r} does not fit {dtype}"
        )
    try:
        nbytes, block = bslz4.read_header(payload.data)
    except ValueError as exc:
        raise MalformedMessage(f"{what}: {exc}") from None
    if nbytes != needed:
        raise MalformedMessage(
            f"{what}: bslz4 chunk announces {nbytes} bytes but {list(shape)} of {dtype} needs {needed}"
        )
    if block == 0 or block % dtype.itemsize:
        raise MalformedMessage(
            f"{what}: bslz4 block size {block} is not a multiple of the pixel size"
        )
    try:
        bslz4.check_blocks(payload.data, needed // dtype.itemsize, dtype.itemsize)
    except ValueError as exc:
        raise MalformedMessage(f"{what}: {exc}") from None
    return shape, dtype, "bslz4", payload.data
