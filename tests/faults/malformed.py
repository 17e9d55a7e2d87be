"""Hypothesis strategies for malformed messages of every stream the receiver reads.

Each strategy draws a valid message (a header, an image or an end of STINS,
Dectris stream v1, v2 or the SLS stream, small frames raw or bslz4) and
spoils it with one to three mutations: parts cut short, dropped, added or
replaced by noise; a field given a wrong type or an out-of-range number (64
bits and beyond, negative, NaN); shapes huge, empty or negative; blobs of
the wrong size; bslz4 chunks whose header or block sizes lie. The message
may come out valid (a harmless mutation): the properties say what must hold
either way.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import numpy as np
from hypothesis import strategies as st

from protocols import bslz4, eiger_stream1, eiger_stream2, sls, stins
from protocols.model import Buffer

Parts = list[bytes]

WEIRD_TEXT = [
    "uint16", "float32", "int32", "uint8", "<u2", ">u4", "u2,", "a", "S4", "V2", "O", "c8",
    "float128", "f16", "M8", "int0", "bslz4", "none", "cbf", "mono12p", "lz4", "lz4<",
    "bs16-lz4<", "bs32-lz4<", "<", "image", "header", "series_end", "dimage-1.0",
    "dheader-1.0", "dimage_d-1.0", "dseries_end-1.0", "start", "end", "", "\x00", "é" * 3,
]  # fmt: skip
HUGE = [0, -1, 1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63)]
weird_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(HUGE),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(WEIRD_TEXT),
    st.lists(st.sampled_from(HUGE), min_size=0, max_size=4),
    st.lists(st.integers(-3, 64), min_size=0, max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(-5, 5), max_size=2),
)
"""Values a field should never hold: wrong types, numbers out of every range."""


@dataclass(frozen=True)
class Protocol:
    name: str
    parse: Callable[[list[Buffer]], object]
    messages: st.SearchStrategy[Parts]
    keys: tuple[str, ...]
    blob_part: int | None
    """The index of an image's blob (None: CBOR, the blob is inside the one part)."""


def _frame(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    dtype = draw(st.sampled_from(["uint16", "uint32", "uint8"]))
    pixels = np.arange(shape[0] * shape[1], dtype=dtype).reshape(shape)
    return pixels, draw(st.sampled_from(["none", "bslz4"]))


def _blob(pixels: np.ndarray, compression: str) -> bytes:
    return bslz4.compress(pixels) if compression == "bslz4" else pixels.tobytes()


@st.composite
def stins_messages(draw: st.DrawFn) -> Parts:
    kind = draw(st.sampled_from(["image", "image", "image", "header", "end"]))
    if kind == "header":
        meta = draw(st.one_of(st.none(), st.just({"exptime": 0.1, "detector": "x"})))
        return [bytes(p) for p in stins.encode_header(0, "scan.h5", meta)]
    if kind == "end":
        return [bytes(p) for p in stins.encode_series_end(draw(st.integers(1, 100)))]
    pixels, compression = _frame(draw)
    frame = draw(st.integers(0, 50))
    parts = stins.encode_image(
        frame + 1, frame, _blob(pixels, compression), pixels.shape, pixels.dtype, compression
    )
    return [bytes(p) for p in parts]


TABLE_SHAPE = (2, 3)


@st.composite
def dectris_v1_messages(draw: st.DrawFn) -> Parts:
    kind = draw(st.sampled_from(["image", "image", "image", "header", "end"]))
    series = draw(st.integers(0, 9))
    if kind == "header":
        detail = draw(st.sampled_from(["basic", "none", "all"]))
        tables = {
            "flatfield": np.ones(TABLE_SHAPE, np.float32),
            "pixel_mask": np.zeros(TABLE_SHAPE, np.uint32),
            "countrate_table": np.zeros(TABLE_SHAPE, np.uint32),
        }
        parts = eiger_stream1.encode_header(
            series,
            detail,
            {"nimages": 5, "ntrigger": 1, "count_time": 0.1},
            {"filename": "scan.h5", "rotate": 0},
            tables if detail == "all" else None,
        )
        return [bytes(p) for p in parts]
    if kind == "end":
        return [bytes(p) for p in eiger_stream1.encode_series_end(series)]
    pixels, compression = _frame(draw)
    frame = draw(st.integers(0, 50))
    parts = eiger_stream1.encode_image(
        series, frame, _blob(pixels, compression), pixels.shape, pixels.dtype, compression
    )
    return [bytes(p) for p in parts]


@st.composite
def sls_messages(draw: st.DrawFn) -> Parts:
    if draw(st.integers(0, 4)) == 0:
        return [bytes(p) for p in sls.encode_end()]
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    dtype = draw(st.sampled_from(["uint8", "uint16", "uint32"]))
    pixels = np.arange(shape[0] * shape[1], dtype=dtype).reshape(shape)
    index = draw(st.integers(0, 9))
    parts = sls.encode_image(
        index, pixels.tobytes(), shape, dtype, frames=10, fname="scan", file_index=1
    )
    return [bytes(p) for p in parts]


def _v2_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a v2 message before CBOR encoding, so that mutations can reach inside."""
    kind = draw(st.sampled_from(["image", "image", "image", "start", "end"]))
    ids = {"series_id": draw(st.integers(0, 9)), "series_unique_id": "01HRCJF83S"}
    if kind == "end":
        return {"type": "end", **ids}
    if kind == "start":
        return {
            "type": "start",
            **ids,
            "channels": ["threshold_1"],
            "number_of_images": 5,
            "count_time": 0.1,
            "threshold_energy": {"threshold_1": 4000.0},
            "user_data": '{"filename": "scan.h5"}',
        }
    channels = draw(st.integers(1, 2))
    pixels, compression = _frame(draw)
    data = {
        f"threshold_{c + 1}": eiger_stream2.multi_dim_array(
            _blob(pixels, compression), pixels.shape, pixels.dtype, compression
        )
        for c in range(channels)
    }
    return {
        "type": "image",
        **ids,
        "image_id": draw(st.integers(0, 50)),
        "real_time": [1, 100],
        "start_time": [0, 100],
        "stop_time": [1, 100],
        "data": data,
    }


V2_TAGS = [40, 56500, 64, 65, 69, 70, 85, 86, 999, 55799]


@st.composite
def weird_cbor(draw: st.DrawFn) -> Any:
    """A value or a tag with the wrong content, where v2 expects a tagged array."""
    return draw(
        st.one_of(
            weird_values,
            st.builds(
                cbor2.CBORTag,
                st.sampled_from(V2_TAGS),
                st.one_of(
                    weird_values,
                    st.binary(max_size=40),
                    st.lists(st.one_of(weird_values, st.binary(max_size=20)), max_size=4),
                ),
            ),
        )
    )


def _mutate_v2(draw: st.DrawFn, fields: dict[str, Any]) -> None:
    """Spoil a field of the message, or of an image's tag 40 / typed array / tag 56500."""
    images = fields.get("data")
    if isinstance(images, dict) and images and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(images)))
        tag = images[name]
        if not (
            isinstance(tag, cbor2.CBORTag)
            and isinstance(tag.value, list)
            and len(tag.value) == 2
            and isinstance(tag.value[1], cbor2.CBORTag)
        ):
            images[name] = draw(weird_cbor())
            return
        dims, typed = tag.value
        what = draw(st.sampled_from(["dims", "typed", "payload", "chunk", "replace"]))
        if what == "dims":
            dims = draw(st.one_of(weird_values, st.lists(st.sampled_from(HUGE), max_size=3)))
        elif what == "typed":
            typed = cbor2.CBORTag(draw(st.sampled_from(V2_TAGS)), typed.value)
        elif what == "payload":
            typed = cbor2.CBORTag(typed.tag, draw(weird_cbor()))
        elif what == "chunk" and _is_compressed(typed.value):
            algorithm, size, chunk = typed.value.value
            chunk = draw(spoiled_chunks(chunk))
            size = draw(st.one_of(st.just(size), weird_values))
            typed = cbor2.CBORTag(typed.tag, cbor2.CBORTag(56500, [algorithm, size, chunk]))
        else:
            images[name] = draw(weird_cbor())
            return
        images[name] = cbor2.CBORTag(40, [dims, typed])
        return
    key = draw(st.sampled_from([*V2_KEYS, "data", "x"]))
    fields[key] = draw(weird_cbor())


def _is_compressed(value: object) -> bool:
    """A tag 56500 [algorithm, element size, chunk] as the detector sends it (an earlier
    mutation of the same message may have made it anything else)."""
    return (
        isinstance(value, cbor2.CBORTag)
        and isinstance(value.value, list)
        and len(value.value) == 3
        and isinstance(value.value[2], bytes)
    )


V2_KEYS = ("type", "series_id", "series_unique_id", "image_id", "number_of_images", "channels",
           "count_time", "threshold_energy", "user_data")  # fmt: skip


@st.composite
def dectris_v2_messages(draw: st.DrawFn) -> Parts:
    fields = _v2_fields(draw)
    for _ in range(draw(st.integers(0, 2))):
        _mutate_v2(draw, fields)
    return [eiger_stream2.SELF_DESCRIBE + cbor2.dumps(fields)]


@st.composite
def spoiled_chunks(draw: st.DrawFn, chunk: bytes) -> bytes:
    """A bslz4 chunk whose header or block structure lies."""
    data = bytearray(chunk)
    how = draw(st.sampled_from(["nbytes", "block", "block_size_field", "cut", "extend", "noise"]))
    if how == "nbytes" and len(data) >= 8:
        data[0:8] = struct.pack(">Q", draw(st.sampled_from([0, 1, 7, 2**63, 2**64 - 1, len(data)])))
    elif how == "block" and len(data) >= 12:
        data[8:12] = struct.pack(">I", draw(st.sampled_from([0, 1, 3, 8, 2**31, 2**32 - 1])))
    elif how == "block_size_field" and len(data) >= 16:
        data[12:16] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    elif how == "cut" and data:
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=16))
    else:
        data = bytearray(draw(st.binary(max_size=64)))
    return bytes(data)


@st.composite
def spoiled(draw: st.DrawFn, protocol: Protocol) -> Parts:
    """A valid message of ``protocol`` with one to three mutations."""
    parts = list(draw(protocol.messages))
    for _ in range(draw(st.integers(1, 3))):
        parts = draw(mutation(parts, protocol))
    return parts


@st.composite
def mutation(draw: st.DrawFn, parts: Parts, protocol: Protocol) -> Parts:
    parts = list(parts)
    how = draw(
        st.sampled_from(
            ["field", "field", "field", "blob", "blob", "cut", "drop", "add", "noise", "empty"]
        )
    )
    objects = [i for i, part in enumerate(parts) if _json_object(part) is not None]
    if how == "field" and objects:
        index = draw(st.sampled_from(objects))
        fields = _json_object(parts[index])
        assert fields is not None
        key = draw(st.one_of(st.sampled_from(protocol.keys), st.text(max_size=6)))
        if draw(st.integers(0, 5)) == 0 and key in fields:
            del fields[key]
        else:
            fields[key] = draw(weird_values)
        parts[index] = json.dumps(fields).encode()
    elif how == "blob" and protocol.blob_part is not None and len(parts) > protocol.blob_part:
        blob = parts[protocol.blob_part]
        is_chunk = len(blob) >= 12 and _json_object(blob) is None
        if is_chunk and draw(st.booleans()):
            parts[protocol.blob_part] = draw(spoiled_chunks(blob))
        else:
            cut = draw(st.integers(-16, 16))
            parts[protocol.blob_part] = blob[:cut] if cut < 0 else blob + b"\0" * cut
    elif how == "cut" and parts:
        index = draw(st.integers(0, len(parts) - 1))
        parts[index] = parts[index][: draw(st.integers(0, max(0, len(parts[index]) - 1)))]
    elif how == "drop" and parts:
        del parts[draw(st.integers(0, len(parts) - 1))]
    elif how == "add":
        parts.insert(draw(st.integers(0, len(parts))), draw(st.binary(max_size=32)))
    elif how == "noise" and parts:
        parts[draw(st.integers(0, len(parts) - 1))] = draw(st.binary(max_size=64))
    elif how == "empty":
        parts = []
    return parts


def _json_object(part: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(part)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


STINS = Protocol(
    "STINS",
    stins.parse,
    stins_messages(),
    ("htype", "msg_number", "frame", "shape", "type", "compression", "filename", "discard"),
    1,
)
DECTRIS_V1 = Protocol(
    "Dectris v1",
    eiger_stream1.parse,
    dectris_v1_messages(),
    (
        "htype",
        "series",
        "frame",
        "hash",
        "header_detail",
        "shape",
        "type",
        "encoding",
        "size",
        "nimages",
        "ntrigger",
        "count_time",
        "filename",
        "rotate",
    ),
    2,
)
DECTRIS_V2 = Protocol("Dectris v2", eiger_stream2.parse, dectris_v2_messages(), V2_KEYS, None)
SLS = Protocol(
    "SLS",
    sls.parse,
    sls_messages(),
    (
        "data",
        "frameIndex",
        "frameNumber",
        "fileIndex",
        "bitmode",
        "shape",
        "size",
        "progress",
        "fname",
        "addJsonHeader",
    ),
    1,
)
PROTOCOLS = [STINS, DECTRIS_V1, DECTRIS_V2, SLS]


def known_examples() -> dict[str, list[Parts]]:
    """Messages that broke a parser once (found by the strategies above), tried on every run."""
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    chunk = bslz4.compress(pixels)
    v1 = [
        bytes(p)
        for p in eiger_stream1.encode_image(3, 0, pixels.tobytes(), (8, 8), "uint16", "none")
    ]
    info = json.loads(v1[1])
    v1_examples = []
    for value in ([], {}, [1]):
        info["encoding"] = value
        v1_examples.append([v1[0], json.dumps(info).encode(), *v1[2:]])
    frame = [bytes(p) for p in sls.encode_image(0, pixels.tobytes(), (8, 8), "uint16", frames=2)]
    header = json.loads(frame[0])
    sls_examples = []
    for value in ([], {}, [16]):
        header["bitmode"] = value
        sls_examples.append([json.dumps(header).encode(), frame[1]])
    v2_examples = []
    for cut in (chunk[:-1], chunk[:13], chunk + b"\0"):
        array = eiger_stream2.multi_dim_array(cut, (8, 8), "uint16", "bslz4")
        fields = {"type": "image", "series_id": 1, "series_unique_id": "u", "image_id": 0,
                  "data": {"threshold_1": array}}  # fmt: skip
        v2_examples.append([eiger_stream2.SELF_DESCRIBE + cbor2.dumps(fields)])
    stins_examples = [
        [bytes(p) for p in stins.encode_image(1, 0, chunk[:-1], (8, 8), "uint16", "bslz4")],
        [
            json.dumps(
                {
                    "htype": "image",
                    "msg_number": 1,
                    "frame": 0,
                    "shape": [8, 8],
                    "type": [],
                    "compression": {},
                }
            ).encode(),
            pixels.tobytes(),
        ],
    ]
    return {"STINS": stins_examples, "Dectris v1": v1_examples, "Dectris v2": v2_examples,
            "SLS": sls_examples}  # fmt: skip
