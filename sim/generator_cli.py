"""``daq-generator``: send synthetic series (STINS, Dectris v1/v2, SLS) to a stream-receiver.

``--modules K`` sends a multi-module detector instead: K STINS streams, one
per module (:mod:`sim.module_streams`), placed by ``--geometry`` or the default
windmill; ``--module NAME`` sends one module's stream only.

Maps flags onto :class:`sim.generator.GeneratorSettings` and reports one line
at the end; everything else lives in :mod:`sim.generator`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from sim.generator import (
    Compression,
    GeneratorError,
    GeneratorSettings,
    HeaderDetail,
    PixelType,
    SeriesStats,
    StreamGenerator,
    StreamProtocol,
)
from sim.geometry import Geometry, load_geometry
from sim.module_streams import ModuleStreams

log = logging.getLogger("daq-generator")

PROG = "daq-generator"
SERIES_PLACEHOLDER = "{series}"
DEFAULTS = GeneratorSettings()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator; 0 when every series was delivered, 1 when not, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        parser.error(describe_errors(exc, options_of_fields(args)))
    try:
        stats = run(settings, args.series)
    except GeneratorError as exc:
        log.error("%s", exc)
        return 1
    print(summary(stats))
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Refuses bad arguments in one line on stderr, which a log or a script shows whole."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The flags, one group per concern; every default shown in ``--help`` is GeneratorSettings'."""
    parser = OneLineParser(
        prog=PROG,
        description="Send series of synthetic detector frames over a ZeroMQ PUSH socket, as "
        "a detector control unit does: STINS, Dectris stream v1 or v2, or the SLS stream. "
        "Pixel values encode the frame number, so stored frames can be checked against what "
        "was sent.",
    )
    add_stream_options(parser.add_argument_group("stream"))
    add_protocol_options(parser.add_argument_group("protocol"))
    add_frame_options(parser.add_argument_group("frames"))
    add_series_options(parser.add_argument_group("series and files"))
    add_module_options(parser.add_argument_group("multi-module detector"))
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="logging verbosity (default: %(default)s)",
    )
    return parser


def add_stream_options(group: argparse._ArgumentGroup) -> None:
    """Where the stream goes and how long to wait for the receiver."""
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--bind",
        metavar="ENDPOINT",
        default=DEFAULTS.endpoint,
        help="endpoint to bind, for the receiver to connect to (default: %(default)s; "
        "use port * for a free port)",
    )
    where.add_argument(
        "--connect",
        metavar="ENDPOINT",
        help="connect to a receiver that binds ENDPOINT instead of binding (default: bind)",
    )
    group.add_argument(
        "--send-hwm",
        type=int,
        default=DEFAULTS.send_hwm,
        metavar="N",
        help="messages queued before sending waits; bounds memory (default: %(default)s)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS.timeout_s,
        metavar="S",
        help="fail when no receiver takes data for S seconds (default: %(default)s)",
    )
    group.add_argument(
        "--share",
        type=share_of_stream,
        metavar="K/N",
        help="STINS: send only the messages whose msg_number is K modulo N, as one of N DCUs "
        "balancing one stream (MAX IV's list of dcu_host_purple); N generators, K = 0 .. "
        "N-1, send the whole stream between them (default: the whole stream)",
    )


def add_protocol_options(group: argparse._ArgumentGroup) -> None:
    """The wire protocol and what each protocol's headers carry."""
    group.add_argument(
        "--protocol",
        choices=get_args(StreamProtocol),
        default=DEFAULTS.protocol,
        help="wire protocol: stins, dectris-v1 (Eiger stream v1), dectris-v2 (Eiger stream v2, "
        "CBOR) or sls (SLS detector, one module) (default: %(default)s)",
    )
    group.add_argument(
        "--header-detail",
        choices=get_args(HeaderDetail),
        default=DEFAULTS.header_detail,
        help="dectris-v1: what the series header carries, as the Eiger's stream setting "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--thresholds",
        type=int,
        default=DEFAULTS.thresholds,
        metavar="K",
        help="dectris-v2: channels (energy thresholds) per frame (default: %(default)s)",
    )
    group.add_argument(
        "--series-id",
        type=int,
        default=DEFAULTS.series_id,
        metavar="N",
        help="dectris-v1/v2: series id of the first series, SLS: its file index; the next "
        "series counts on (default: %(default)s)",
    )


def add_frame_options(group: argparse._ArgumentGroup) -> None:
    """What each frame is, how fast and in which order the frames go."""
    group.add_argument(
        "--frames",
        type=int,
        default=DEFAULTS.frames,
        metavar="N",
        help="frames per series (default: %(default)s)",
    )
    group.add_argument(
        "--rate",
        type=float,
        default=DEFAULTS.rate,
        metavar="HZ",
        help="frames per second; 0 sends as fast as the receiver takes them (default: %(default)s)",
    )
    group.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=list(DEFAULTS.shape),
        help=f"frame height and width in pixels (default: {' '.join(map(str, DEFAULTS.shape))})",
    )
    group.add_argument(
        "--dtype",
        choices=get_args(PixelType),
        default=DEFAULTS.dtype,
        help="pixel type (default: %(default)s)",
    )
    group.add_argument(
        "--compression",
        choices=get_args(Compression),
        default=DEFAULTS.compression,
        help="blob encoding; bslz4 is the HDF5 filter-32008 chunk (default: %(default)s)",
    )
    group.add_argument(
        "--distinct-frames",
        type=int,
        default=DEFAULTS.distinct_frames,
        metavar="K",
        help="encode only K distinct frames and repeat them (frame k carries the pixels of "
        "frame k mod K): a generator fast enough to benchmark a receiver (default: all distinct)",
    )
    group.add_argument(
        "--out-of-order",
        action="store_true",
        help="send the frames of a series in a shuffled (seeded, reproducible) order "
        "(default: in order)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="seed of the --out-of-order shuffle (default: %(default)s)",
    )


def add_series_options(group: argparse._ArgumentGroup) -> None:
    """How many series, and the file name and metadata each one asks the receiver for."""
    group.add_argument(
        "--series",
        type=positive_int,
        default=1,
        metavar="K",
        help=f"send K series in a row on one stream; file names get _0001.. appended, or "
        f"{SERIES_PLACEHOLDER} replaced by 0001.. (default: %(default)s)",
    )
    group.add_argument(
        "--filename",
        default=DEFAULTS.filename,
        metavar="PATH",
        help=f"file the receiver writes; empty = live view only; may hold {SERIES_PLACEHOLDER} "
        "(default: empty)",
    )
    group.add_argument(
        "--meta",
        type=json_object,
        metavar="JSON",
        help="JSON object stored by the receiver in the NXdetector group (STINS: the header's "
        "2nd part; Dectris: added to the detector configuration) (default: none)",
    )


def add_module_options(group: argparse._ArgumentGroup) -> None:
    """A detector of several modules, one STINS stream each, or one module's stream."""
    group.add_argument(
        "--modules",
        type=int,
        default=DEFAULTS.modules,
        metavar="K",
        help="send a detector of K modules, one STINS stream each (MAX IV's Lambda format), "
        "on consecutive ports from the --bind/--connect port; --shape is a module's; every "
        "module's pixels are its part of the synthetic full frame (default: one stream)",
    )
    group.add_argument(
        "--geometry",
        type=geometry_file,
        metavar="FILE",
        help='JSON {"full_shape": [H, W], "modules": [{"name", "x", "y", "rotation"}, ...]} '
        "placing the modules (rotation in quarter turns counter-clockwise) (default: the "
        "windmill of ForMAX's Lambda for 4 modules, a row otherwise)",
    )
    group.add_argument(
        "--module",
        metavar="NAME",
        help="send only this module's stream, on the --bind/--connect endpoint itself "
        "(one process per module, as one streamer per module) (default: every module's)",
    )


def json_object(text: str) -> dict[str, Any]:
    """Parse ``--meta``; the receiver only accepts an object as the header's 2nd part."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'must be a JSON object such as \'{{"sensor": "CdTe"}}\', got {type(value).__name__}'
        )
    return value


def geometry_file(text: str) -> Geometry:
    """Read ``--geometry``; a file that is not a geometry is refused in one line."""
    try:
        return load_geometry(Path(text))
    except ValidationError as exc:
        problems = (
            f"{'.'.join(map(str, error['loc'])) or 'geometry'}: {reason_of(error)}"
            for error in exc.errors(include_url=False)
        )
        raise argparse.ArgumentTypeError(f"{text}: {'; '.join(problems)}") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def share_of_stream(text: str) -> tuple[int, int]:
    """Parse ``K/N``: share K (from 0) of a stream sent by N generators."""
    part, sep, parts = text.partition("/")
    try:
        if not sep:
            raise ValueError
        share = int(part), int(parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not K/N (such as 0/2): {text!r}") from None
    if not 0 <= share[0] < share[1]:
        raise argparse.ArgumentTypeError(f"K/N needs 0 <= K < N, got {text!r}")
    return share


def positive_int(text: str) -> int:
    """Parse a count that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def settings_from_args(args: argparse.Namespace) -> GeneratorSettings:
    """Validate the flags as one settings model (raises pydantic's ValidationError)."""
    return GeneratorSettings(
        endpoint=args.connect or args.bind,
        connect=args.connect is not None,
        protocol=args.protocol,
        header_detail=args.header_detail,
        thresholds=args.thresholds,
        series_id=args.series_id,
        frames=args.frames,
        rate=args.rate,
        shape=args.shape,
        dtype=args.dtype,
        compression=args.compression,
        filename=args.filename,
        meta=args.meta,
        out_of_order=args.out_of_order,
        seed=args.seed,
        distinct_frames=args.distinct_frames,
        send_hwm=args.send_hwm,
        timeout_s=args.timeout,
        modules=args.modules,
        geometry=args.geometry,
        module=args.module,
        share=args.share,
    )


def options_of_fields(args: argparse.Namespace) -> dict[str, str]:
    """The flag to name for each settings field, where it is not the field's name as a flag."""
    return {"endpoint": "--connect" if args.connect else "--bind", "timeout_s": "--timeout"}


def describe_errors(exc: ValidationError, options: Mapping[str, str]) -> str:
    """One line naming the flags at fault (``options`` by field, else ``--field-name``).

    An error of the whole (two settings that do not go together) has no
    field; its message names the settings itself.
    """
    problems = []
    for error in exc.errors(include_url=False):
        if error["loc"]:
            field = str(error["loc"][0])
            option = options.get(field, "--" + field.replace("_", "-"))
            problems.append(f"{option}: {reason_of(error)}")
        else:
            problems.append(reason_of(error))
    return "; ".join(problems)


def reason_of(error: ErrorDetails) -> str:
    """A validator's own message as it wrote it, else pydantic's."""
    return str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]


def series_filename(template: str, index: int, count: int) -> str:
    """File name of series ``index`` (1-based) of ``count``, so series never share a file.

    ``{series}`` in the template becomes the 4-digit index; otherwise, with
    more than one series, ``_0001`` goes before the extension. An empty name
    (live view only) stays empty.
    """
    number = f"{index:04d}"
    if SERIES_PLACEHOLDER in template:
        return template.replace(SERIES_PLACEHOLDER, number)
    if count == 1 or not template:
        return template
    path = PurePosixPath(template)
    return str(path.with_name(f"{path.stem}_{number}{path.suffix}"))


def run(settings: GeneratorSettings, series: int) -> SeriesStats:
    """Send ``series`` series on one socket and add up what was sent."""
    total = SeriesStats(0, 0, 0.0)
    streams = ModuleStreams if settings.module_geometry is not None else StreamGenerator
    with streams(settings) as generator:
        for index in range(1, series + 1):
            filename = series_filename(settings.filename, index, series)
            total += generator.send_series(filename)
    return total


def summary(stats: SeriesStats) -> str:
    """The line a user or a script reads at the end."""
    return (
        f"{PROG}: sent {stats.frames} frames, {stats.nbytes} bytes in {stats.seconds:.3f} s, "
        f"{stats.frames_per_s:.1f} frames/s"
    )
