"""Malformed input, property-based: never a crash, never a wrong frame, always a counted error.

Three levels:

- the parsers (``protocols/*.py``) directly, in bulk: any spoiled STINS,
  Dectris v1, v2 or SLS message is refused with :class:`MalformedMessage`
  and a reason, or accepted as a message whose blob fits what it announces
  (its size, and a bslz4 chunk whose blocks add up);
- a few hundred messages through one receiver in this process: valid frames
  with spoiled messages between them, each series' file holds exactly the
  valid frames, right, and every spoiled message is counted with a reason;
- the HTTP API: any method, path, query string and small body is answered
  without a server error, and the API answers on.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zmq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from protocols import bslz4, stins
from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image, StackedImage
from receiver.api import ApiServer, create_app
from receiver.receiver import Receiver
from tests.faults.malformed import PROTOCOLS, STINS, Protocol, known_examples, spoiled
from tests.faults.support import FaultRow, StinsSender, check_file, pixels, shorten
from tests.receiver_support import InProcessReceivers, series_closed

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

BULK_EXAMPLES = 400


def blob_fits(image: Image) -> str:
    """Why an accepted image's blob does not fit what it announces; empty when it does."""
    if image.frame < 0 or not image.shape or min(image.shape) <= 0:
        return f"frame {image.frame}, shape {image.shape}"
    if image.dtype.kind not in "uif":
        return f"pixel type {image.dtype}"
    if isinstance(image, StackedImage):
        chunks: list[Buffer] = list(image.chunks())
        plane = image.shape[1:]
    else:
        chunks, plane = [image.data], image.shape
    count = math.prod(plane)
    for chunk in chunks:
        if image.compression == "none" and len(chunk) != count * image.dtype.itemsize:
            return f"{len(chunk)} raw bytes for {list(plane)} {image.dtype}"
        if image.compression == "bslz4":
            try:
                bslz4.check_blocks(chunk, count, image.dtype.itemsize)
            except ValueError as exc:
                return f"a bslz4 chunk no reader can open: {exc}"
    return ""


def parse_quietly(protocol: Protocol, parts: list[bytes]) -> object:
    """Parse as a worker does; numpy's deprecation of dtype aliases ('a') is a warning there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return protocol.parse(list(parts))


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=[p.name for p in PROTOCOLS])
def test_a_parser_refuses_every_spoiled_message_with_a_reason_or_reads_it_right(
    protocol: Protocol, fault_row: FaultRow
) -> None:
    fault_row.case = f"malformed {protocol.name} messages, parser ({BULK_EXAMPLES} drawn)"
    counts: Counter[str] = Counter()
    found: list[str] = []

    @settings(
        max_examples=BULK_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # CI runs the same examples every time; explore with a seed by hand
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(spoiled(protocol))
    def check(parts: list[bytes]) -> None:
        counts["tried"] += 1
        examine(parts)

    def examine(parts: list[bytes]) -> None:
        try:
            message = parse_quietly(protocol, parts)
        except MalformedMessage as exc:
            counts["refused"] += 1
            assert exc.reason, "a refusal says why"
            return
        except Exception as exc:
            counts["crashed"] += 1
            found.append(f"{type(exc).__name__}: {shorten(str(exc), 100)}")
            raise
        counts["accepted"] += 1
        if isinstance(message, Image):
            problem = blob_fits(message)
            if problem:
                counts["accepted wrongly"] += 1
                found.append(problem)
            assert not problem, f"accepted an image whose blob does not fit: {problem}"

    try:
        for parts in known_examples()[protocol.name]:  # found before: tried every time
            counts["tried"] += 1
            try:
                examine(parts)
            except AssertionError:
                pass  # counted and noted; the drawn examples run too, then the test fails
            except Exception:  # the same: a parser's exception is the finding
                pass
        check()
        assert not found, f"known examples: {found}"
    finally:
        fault_row.acknowledged = f"{counts['tried']} messages"
        fault_row.written = "-"
        fault_row.readable = "-"
        fault_row.user_saw = (
            f"{counts['refused']} refused with a reason, {counts['accepted']} accepted "
            "(harmless mutations)"
            + (f"; {counts['crashed']} other exceptions" if counts["crashed"] else "")
            + (
                f"; {counts['accepted wrongly']} accepted wrongly"
                if counts["accepted wrongly"]
                else ""
            )
        )
        if found:
            fault_row.figures = {"first problem": found[0]}


# A few hundred messages through one receiver


SHAPE = (8, 12)


@st.composite
def series_with_spoiled_messages(draw: st.DrawFn) -> list[tuple[str, list[bytes]]]:
    """Valid frames 0..n-1 with spoiled messages between them, in the order they are sent.

    Numbers: the header is 0 and each message after it takes the next
    ``msg_number``, spoiled ones too (a spoiled message may have lost it:
    then it leaves a gap the receiver waits ``gap_timeout`` for).
    """
    frames = draw(st.integers(3, 12))
    spoiled_between = draw(st.lists(st.integers(0, frames), min_size=1, max_size=6))
    out: list[tuple[str, list[bytes]]] = []
    number = 1
    for frame in range(frames + 1):
        for _ in range(spoiled_between.count(frame)):
            parts = draw(spoiled(STINS))
            out.append(("spoiled", renumbered(parts, number)))
            number += 1
        if frame < frames:
            parts = stins.encode_image(number, frame, pixels(frame, SHAPE), SHAPE, "uint16")
            out.append(("frame", [bytes(p) for p in parts]))
            number += 1
    out.append(("end", [bytes(p) for p in stins.encode_series_end(number)]))
    return out


def renumbered(parts: list[bytes], number: int) -> list[bytes]:
    """A spoiled message given its place in the stream, where it still has a readable number."""
    try:
        import json

        fields = json.loads(parts[0])
        if isinstance(fields, dict) and type(fields.get("msg_number")) is int:
            fields["msg_number"] = number
            return [json.dumps(fields).encode(), *parts[1:]]
    except (ValueError, IndexError, UnicodeDecodeError):
        pass
    return parts


def stins_refuses(parts: list[bytes]) -> bool:
    try:
        parse_quietly(STINS, parts)
    except MalformedMessage:
        return True
    return False


@pytest.fixture
def stream(context: zmq.Context) -> Iterator[StinsSender]:
    sender = StinsSender(context, timeout_ms=10000)
    yield sender
    sender.close()


@pytest.mark.allow_error_log
def test_spoiled_messages_through_a_receiver_are_counted_and_never_stored(
    receivers: InProcessReceivers,
    stream: StinsSender,
    tmp_path: Path,
    fault_row: FaultRow,
) -> None:
    fault_row.case = "malformed STINS messages between valid frames, through one receiver"
    receiver: Receiver = receivers.start(connect=[stream.endpoint], gap_timeout=0.2, workers=2)
    stream.connected()
    totals: Counter[str] = Counter()
    problems: list[str] = []
    series = 0

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every try costs gap waits
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(series_with_spoiled_messages())
    def check(messages: list[tuple[str, list[bytes]]]) -> None:
        nonlocal series
        # Spoiled messages the parser would still accept are valid after all, and ZeroMQ has
        # no message of no parts: both left out.
        messages = [m for m in messages if m[0] != "spoiled" or (m[1] and stins_refuses(m[1]))]
        sent_spoiled = sum(kind == "spoiled" for kind, _ in messages)
        frames = sum(kind == "frame" for kind, _ in messages)
        before = receiver.status()
        series += 1
        name = f"series_{series}.h5"
        stream.header(name, 0)
        for _, parts in messages:
            stream.send(parts)
        status = series_closed(receiver, series, timeout=30)
        last = status["last_series"]
        counted = last["malformed_messages"] + (
            status["unreadable_messages"] - before["unreadable_messages"]
        )
        check = check_file(tmp_path / name)
        totals["messages"] += len(messages) + 1
        totals["spoiled"] += sent_spoiled
        totals["counted"] += counted
        totals["frames"] += frames
        totals["written"] += last["frames_written"]
        totals["readable"] += check.right
        if sent_spoiled:
            totals["series with spoiled"] += 1
            totals["ended in error"] += status["state"] == "error" and bool(status["error"])
        if sent_spoiled and status["state"] != "error":
            unreadable = status["unreadable_messages"] - before["unreadable_messages"]
            problems.append(
                f"{name}: {status['state']}, no reason, after {sent_spoiled} spoiled messages "
                f"({unreadable} unreadable, {last['malformed_messages']} malformed)"
            )
        assert check.readable, check.error
        assert check.frames == list(range(frames)), f"{name}: exactly the valid frames"
        assert check.right == frames and not check.wrong
        assert counted == sent_spoiled, f"{name}: {counted} counted of {sent_spoiled} spoiled"
        if sent_spoiled:
            assert status["state"] == "error" and status["error"], "a reason is given"

    try:
        check()
    finally:
        fault_row.acknowledged = f"{totals['frames']} frames (+{totals['spoiled']} spoiled)"
        fault_row.written = totals["written"]
        fault_row.readable = totals["readable"]
        fault_row.user_saw = (
            f"{totals['ended in error']} of {totals['series with spoiled']} series with spoiled "
            f"messages ended in error with a reason; {totals['counted']} of {totals['spoiled']} "
            "spoiled messages counted (malformed or unreadable)"
        )
        fault_row.figures = {"series": series, "messages": totals["messages"]}
        if problems:
            fault_row.figures["problem"] = problems[0]


# The HTTP API


PATHS = ["/status", "/received_frames", "/downsample", "/last_frame", "/reset", "/metrics",
         "/openapi.json", "/", "/docs", "/nowhere", "/status/../reset", "//status"]  # fmt: skip
KNOWN_BODIES = [
    (b'{"value": 1e400}', "application/json"),
    (b'{"value": NaN}', "application/json"),
    (b"\x80", "text/plain"),
    (b"\x80", ""),
]
"""Bodies of POST /downsample that made the API answer 500 once (found by the property below)."""
Query = list[tuple[str, str]]
query_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "-1", "1", "4096", "4097", "9" * 400, "1e400", "NaN", "png", "pickle"]),
    st.integers(-(2**70), 2**70).map(str),
)
bodies = st.one_of(
    st.binary(max_size=256),
    st.sampled_from(
        [
            b"",
            b"{}",
            b'{"value": 4}',
            b'{"value": 1e400}',
            b'{"value": -1}',
            b'{"value": "4"}',
            b'{"value": 99999999999999999999999}',
            b"[",
            b"null",
            b'{"value": [4]}',
            b'{"value": NaN}',
            b'{"value": -Infinity}',
            b'{"value": 4, "value": 1e999}',
        ]
    ),
)


@pytest.fixture
def api(receivers: InProcessReceivers, stream: StinsSender) -> Iterator[tuple[Receiver, str]]:
    receiver = receivers.start(connect=[stream.endpoint])
    with ApiServer(create_app(receiver), "127.0.0.1", 0) as server:
        yield receiver, server.url


@pytest.mark.allow_error_log  # a server error is logged too: the test fails on its answer
def test_any_request_to_the_api_is_answered_without_a_server_error(
    api: tuple[Receiver, str], stream: StinsSender, fault_row: FaultRow
) -> None:
    fault_row.case = "malformed HTTP requests: methods, paths, query strings, bodies"
    receiver, url = api
    stream.connected()
    stream.series("live.h5", 2, SHAPE)
    codes: Counter[int | str] = Counter()
    server_errors: list[str] = []

    with httpx.Client(base_url=url, timeout=10) as client:

        def ask(method: str, path: str, query: Query, body: bytes | None, kind: str) -> None:
            factor = receiver.downsample
            headers = {"content-type": kind} if kind else {}
            try:
                reply = client.request(method, path, params=query, content=body, headers=headers)
                code: int | str = reply.status_code
            except httpx.TransportError as exc:
                code = f"no answer ({type(exc).__name__})"
            codes[code] += 1
            if not isinstance(code, int) or code >= 500:
                server_errors.append(f"{method} {path}?{query} {body!r}: {code}")
            assert isinstance(code, int) and code < 500, server_errors[-1]
            if not (method == "POST" and path == "/downsample" and code == 200):
                assert receiver.downsample == factor, "only an accepted POST changes the factor"

        @settings(max_examples=300, deadline=None, database=None, derandomize=True)
        @given(
            st.sampled_from(["POST", "POST", "GET", "GET", "PUT", "DELETE", "OPTIONS", "HEAD"]),
            st.sampled_from(["/downsample", "/downsample", "/last_frame", *PATHS]),
            st.lists(
                st.tuples(st.sampled_from(["value", "format", "x", ""]), query_values), max_size=3
            ),
            st.one_of(st.none(), bodies),
            st.sampled_from(
                ["application/json", "application/json", "text/plain", "image/png", ""]
            ),
        )
        def check(method: str, path: str, query: Query, body: bytes | None, kind: str) -> None:
            ask(method, path, query, body, kind)

        try:
            check()
        finally:
            for body, kind in KNOWN_BODIES:  # found before: tried every time
                with contextlib.suppress(AssertionError):
                    ask("POST", "/downsample", [], body, kind)
            answered = client.get("/status").status_code
            fault_row.acknowledged = f"{sum(codes.values())} requests"
            fault_row.user_saw = ", ".join(
                f"{n} x {code}" for code, n in sorted(codes.items(), key=lambda c: str(c[0]))
            )
            fault_row.figures = {"/status afterwards": answered}
            if server_errors:
                fault_row.figures["first server error"] = shorten(server_errors[0], 120)
    assert not server_errors, f"{len(server_errors)} server errors, e.g. {server_errors[0]}"
    assert answered == 200
