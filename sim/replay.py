"""``daq-replay``: play a recorded detector stream back over ZeroMQ, as the detector sent it.

A capture is a CBOR sequence (RFC 8742), optionally gzipped (``*.cbors.gz``):
each item is an array of byte strings, the parts of one ZeroMQ message, in
the order they were received (the format of the captures in ``tests/data``). The player
binds a PUSH socket like the generator (or connects), and can substitute
what a control system would have set on the detector: the destination file
name (Dectris v1 ``header_appendix``, v2 ``user_data``, STINS ``filename``)
and the series id, so that one capture can be played several times as
several series. A capture cut short before its series end (the real v1
capture) can be closed with ``--add-end``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import cbor2
import orjson
from pydantic import ValidationError

from protocols import eiger_stream1, eiger_stream2, stins
from sim.cli_support import OneLineParser, float_at_least, zmq_endpoint
from sim.generator import DEFAULT_ENDPOINT, GeneratorError, GeneratorSettings, StreamGenerator

log = logging.getLogger("daq-replay")

PROG = "daq-replay"
Message = list[bytes]


class CaptureError(ValueError):
    """The capture cannot be read or played; the text says why."""


def read_capture(path: Path) -> list[Message]:
    """The messages of a capture file (gzipped when its name ends in ``.gz``)."""
    messages: list[Message] = []
    try:
        with _open_capture(path) as stream:
            while True:
                try:
                    item = cbor2.load(stream)
                except cbor2.CBORDecodeEOF:
                    break
                if not isinstance(item, list | tuple) or not all(
                    isinstance(part, bytes) for part in item
                ):
                    raise CaptureError(
                        f"{path}: item {len(messages)} is not an array of byte strings "
                        "(the parts of one message)"
                    )
                messages.append(list(item))
    except (OSError, EOFError, cbor2.CBORDecodeError) as exc:
        raise CaptureError(f"cannot read capture {path}: {exc}") from None
    if not messages:
        raise CaptureError(f"{path} holds no messages")
    return messages


def _open_capture(path: Path) -> IO[bytes]:
    """The capture's bytes, gunzipped when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        # A GzipFile is not an IO[bytes] to the type checker; the buffered reader
        # around it is, and reads the same bytes (closing it closes the GzipFile).
        return io.BufferedReader(gzip.open(path, "rb"))
    return path.open("rb")


def detect_protocol(messages: Sequence[Message]) -> str:
    """``dectris-v2`` (CBOR), ``dectris-v1`` or ``stins``, from the first message."""
    first = messages[0][0]
    if first.startswith(eiger_stream2.SELF_DESCRIBE):
        return "dectris-v2"
    try:
        fields = orjson.loads(first)
    except orjson.JSONDecodeError:
        fields = None
    htype = fields.get("htype", "") if isinstance(fields, dict) else ""
    if htype.startswith(("dheader", "dimage", "dseries_end")):
        return "dectris-v1"
    if htype in ("header", "image", "series_end"):
        return "stins"
    raise CaptureError(
        "the capture is not Dectris stream v1, v2 or STINS (first message "
        f"{bytes(first[:60])!r}...)"
    )


def prepare(
    messages: Sequence[Message],
    protocol: str,
    filename: str | None = None,
    series_id: int | None = None,
    add_end: bool = False,
) -> list[Message]:
    """The messages to send: file name and series id substituted, an end added if asked."""
    if protocol == "dectris-v1":
        out = [_v1(m, filename, series_id) for m in messages]
    elif protocol == "dectris-v2":
        out = [_v2(m, filename, series_id) for m in messages]
    else:
        out = [_stins(m, filename) for m in messages]
    if add_end and not _has_end(out, protocol):
        out.append(_end(out, protocol))
    return out


def _v1(message: Message, filename: str | None, series_id: int | None) -> Message:
    fields = orjson.loads(message[0])
    out = list(message)
    if series_id is not None and "series" in fields:
        fields["series"] = series_id
        out[0] = orjson.dumps(fields)
    if filename is None or fields.get("htype") != eiger_stream1.HEADER:
        return out
    detail = fields.get("header_detail")
    expected = eiger_stream1.DETAIL_PARTS.get(detail)
    if expected is None:
        raise CaptureError(f"the v1 header has an unknown header_detail {detail!r}")
    appendix: dict[str, Any] = {}
    if len(out) == expected + 1:
        try:
            old = orjson.loads(out[-1])
        except orjson.JSONDecodeError:
            old = None
        appendix = old if isinstance(old, dict) else {}
        out = out[:-1]
    appendix["filename"] = filename
    return [*out, orjson.dumps(appendix)]


def _v2(message: Message, filename: str | None, series_id: int | None) -> Message:
    if filename is None and series_id is None:
        return message
    fields = dict(cbor2.loads(message[0]))
    kind = fields.get("type")
    if kind not in ("start", "image", "end") or (series_id is None and kind != "start"):
        return message
    if series_id is not None:
        fields["series_id"] = series_id
    if filename is not None and kind == "start":
        fields["user_data"] = _with_filename(fields.get("user_data"), filename)
    return [eiger_stream2.SELF_DESCRIBE + cbor2.dumps(fields)]


def _with_filename(user_data: Any, filename: str) -> Any:
    """``user_data`` with ``filename`` set: JSON text stays JSON text, a map stays a map."""
    if isinstance(user_data, str):
        try:
            value = orjson.loads(user_data) if user_data else {}
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return orjson.dumps({**value, "filename": filename}).decode()
    elif isinstance(user_data, Mapping):
        return {**user_data, "filename": filename}
    return orjson.dumps({"filename": filename}).decode()


def _stins(message: Message, filename: str | None) -> Message:
    fields = orjson.loads(message[0])
    if filename is None or fields.get("htype") != "header":
        return message
    fields["filename"] = filename
    return [orjson.dumps(fields), *message[1:]]


def _has_end(messages: Sequence[Message], protocol: str) -> bool:
    fields = _last_fields(messages, protocol)
    if protocol == "dectris-v2":
        return fields.get("type") == "end"
    return fields.get("htype") in (eiger_stream1.END, "series_end")


def _end(messages: Sequence[Message], protocol: str) -> Message:
    """The end of the series the capture's last message belongs to."""
    fields = _last_fields(messages, protocol)
    key = {"dectris-v2": "series_id", "dectris-v1": "series"}.get(protocol)
    if key is not None and key not in fields:
        raise CaptureError(f"the capture's last message has no {key}: cannot add its end")
    if protocol == "dectris-v2":
        return eiger_stream2.encode_end(fields["series_id"], fields.get("series_unique_id", ""))
    if protocol == "dectris-v1":
        return eiger_stream1.encode_series_end(fields["series"])
    # STINS encodes into Buffer parts; they are bytes, and a capture's parts are bytes.
    return [bytes(part) for part in stins.encode_series_end(fields.get("msg_number", -1) + 1)]


def _last_fields(messages: Sequence[Message], protocol: str) -> Mapping[str, Any]:
    """The fields of the capture's last message (CBOR for v2, JSON otherwise)."""
    last = messages[-1][0]
    try:
        fields = cbor2.loads(last) if protocol == "dectris-v2" else orjson.loads(last)
    except (ValueError, cbor2.CBORDecodeError):
        fields = None
    if not isinstance(fields, Mapping):  # cbor2 decodes a map as a frozendict, not a dict
        raise CaptureError(f"the capture's last message is not a {protocol} message")
    return fields


def _positive(text: str) -> float:
    value = float_at_least(0)(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 s, got 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Play a recorded detector stream (a *.cbors or *.cbors.gz capture: "
        "Dectris stream v1, v2 or STINS) back over a ZeroMQ PUSH socket, as the detector "
        "sent it, with the destination file name a control system would set.",
    )
    parser.add_argument("capture", type=Path, help="the capture file")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--bind",
        type=zmq_endpoint,
        metavar="ENDPOINT",
        default=DEFAULT_ENDPOINT,
        help="endpoint to bind, for the receiver to connect to (default: %(default)s)",
    )
    where.add_argument(
        "--connect",
        type=zmq_endpoint,
        metavar="ENDPOINT",
        help="connect to a receiver that binds, instead of binding (default: bind)",
    )
    parser.add_argument(
        "--filename",
        metavar="PATH",
        help="file the receiver writes, put where the detector carries it (v1 "
        "header_appendix, v2 user_data, STINS filename); default: as captured",
    )
    parser.add_argument(
        "--series-id",
        type=int,
        metavar="N",
        help="replace the Dectris series id, so a capture played twice makes two series "
        "(default: as captured)",
    )
    parser.add_argument(
        "--add-end",
        action="store_true",
        help="end the series when the capture stops before its series end (default: do not)",
    )
    parser.add_argument(
        "--rate",
        type=float_at_least(0),
        default=0.0,
        metavar="HZ",
        help="messages per second; 0 sends as fast as the receiver takes them (default: 0)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="fail when no receiver takes data for S seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="logging verbosity (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Play the capture; 0 when the receiver took it all, 1 when not, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        captured = read_capture(args.capture)
        protocol = detect_protocol(captured)
        messages = prepare(captured, protocol, args.filename, args.series_id, args.add_end)
    except CaptureError as exc:
        parser.error(str(exc))
    try:
        settings = GeneratorSettings(
            endpoint=args.connect or args.bind,
            connect=args.connect is not None,
            timeout_s=args.timeout,
        )
    except ValidationError as exc:
        flags = {"endpoint": "--connect" if args.connect else "--bind", "timeout_s": "--timeout"}
        parser.error(
            "; ".join(
                f"{flags.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else PROG}: {e['msg']}"
                for e in exc.errors()
            )
        )
    log.info("replaying %d %s messages from %s", len(messages), protocol, args.capture)
    try:
        with StreamGenerator(settings) as player:
            stats = player.send_raw(messages, args.rate)
    except GeneratorError as exc:
        log.error("%s", exc)
        return 1
    print(
        f"{PROG}: sent {stats.frames} messages, {stats.nbytes} bytes in {stats.seconds:.3f} s "
        f"({protocol}, {args.capture.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
