"""``stream-receiver``: run the receiver as a process with its HTTP API until SIGINT/SIGTERM.

The settings flags are derived from :class:`receiver.config.ReceiverConfig`, so
a new field gets its flag, its help and its default in ``--help`` without an
edit here. Field ``name_of_field`` is ``--name-of-field``; its description is
the help; the field's type chooses the flag's form:

* a bool: ``--x`` / ``--no-x`` (``--no-write``);
* a Literal of strings: one of its choices (``--socket sub``);
* a list of plain values: a repeatable flag (``--connect A --connect B``);
* a tuple of plain values: that many words (``--full-shape ROWS COLUMNS``);
* a plain value (text, number, path): one word (``--workers 4``);
* anything else (``--transforms``, ``--modules``): one JSON document.

The one exception is ``--http HOST:PORT``, the form users know, which sets
``http_host`` and ``http_port`` together. Each value is checked against its
field as it is parsed, so a bad one is refused in one line naming the flag;
the whole, flags over the configuration file over the defaults, is then
validated by :func:`receiver.config.load`, which also checks the settings
that must go together. ``--help`` shows every option's default.

Derived here rather than by pydantic-settings' command line: that keeps the
flags users already type (``--http HOST:PORT`` joins two fields, ``--connect``
repeats rather than taking a JSON list), keeps one precedence in one place
(``load`` reads the TOML, JSON or MAX IV YAML file; a ``BaseSettings`` model
would add environment variables as another source), and leaves the error
messages ours, in terms of flags; all for a page of code and no dependency.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, NoReturn, Union, get_args, get_origin

import zmq
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from receiver.api import ApiServer, ApiServerError, create_app
from receiver.config import ConfigError, Endpoint, ReceiverConfig, load
from receiver.receiver import Receiver

logger = logging.getLogger("stream-receiver")

PROG = "stream-receiver"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HTTP_FIELDS = ("http_host", "http_port")
PLAIN_TYPES = (str, int, float, Path)


class OneLineParser(argparse.ArgumentParser):
    """Refuses bad arguments in one line on stderr, which a log or a supervisor shows whole."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class FieldValue:
    """Turns one flag's text into its field's value, or refuses it with the reason.

    ``as_json``: the text is a JSON document (structured fields), else a plain
    word read as pydantic reads strings (``"4"`` for an int, ``"max"`` for a
    Literal).
    """

    adapter: TypeAdapter[Any]
    as_json: bool = False

    def __call__(self, text: str) -> Any:
        try:
            if self.as_json:
                return self.adapter.validate_json(text)
            return self.adapter.validate_strings(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(reason(exc, with_location=self.as_json)) from None


def reason(exc: ValidationError, with_location: bool) -> str:
    """Pydantic's messages, without its URLs; ``with_location``: where in a JSON value."""
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        where = ".".join(map(str, error["loc"])) if with_location else ""
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def flag_of(field: str) -> str:
    """The flag that sets ``field``."""
    return "--http" if field in HTTP_FIELDS else "--" + field.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """Every flag; the settings group has one per ReceiverConfig field (``--http``: two)."""
    parser = OneLineParser(
        prog=PROG,
        description="Receive a detector stream over ZeroMQ, write it in order to NeXus HDF5, "
        "republish it and report over HTTP. Flags override the configuration file, which "
        "overrides the defaults.",
    )
    files = parser.add_argument_group("configuration file")
    files.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="configuration file: .json or .toml with our settings, or a MAX IV "
        "streaming-receiver .yaml file together with --entry (drop-in mode) "
        "(default: none, the defaults and the flags only)",
    )
    files.add_argument(
        "--entry",
        metavar="NAME",
        help="the detector entry of a MAX IV .yaml configuration (default: none)",
    )
    settings = parser.add_argument_group("settings (each overrides the configuration file)")
    for name, field in ReceiverConfig.model_fields.items():
        if name == HTTP_FIELDS[0]:
            _add_http(settings)
        elif name not in HTTP_FIELDS:
            _add_field(settings, name, field)
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="logging level (default: %(default)s)",
    )
    return parser


def _add_field(group: argparse._ArgumentGroup, name: str, field: FieldInfo) -> None:
    """The flag of one field, with its description and its default as help."""
    flag = flag_of(name)
    options, shown = _form(flag, field)
    description = (field.description or name.replace("_", " ")).replace("%", "%%")
    if options.get("action") == "append":
        description += "; repeat the flag for more"
    group.add_argument(
        flag,
        dest=name,
        default=argparse.SUPPRESS,
        help=f"{description} (default: {shown})",
        **options,
    )


def _form(flag: str, field: FieldInfo) -> tuple[dict[str, Any], str]:
    """The flag's argparse options, chosen by the field's type, and its default as typed."""
    default = field.get_default(call_default_factory=True)
    kind = _without_none(field.annotation)
    item = _plain_item(kind)
    if kind is bool:
        shown = flag if default else "--no-" + flag.removeprefix("--")
        return {"action": argparse.BooleanOptionalAction}, shown
    if get_origin(kind) is Literal and all(isinstance(c, str) for c in get_args(kind)):
        return {"choices": get_args(kind)}, str(default)
    if item is not None:
        words = "none" if not default else " ".join(map(str, default))
        each = {"type": FieldValue(TypeAdapter(item)), "metavar": _metavar(item)}
        if get_origin(kind) is list:
            return {"action": "append", **each}, words
        if Ellipsis in get_args(kind):
            return {"nargs": "+", **each}, words
        count = len(get_args(kind))
        return {**each, "nargs": count, "metavar": (each["metavar"],) * count}, words
    whole = TypeAdapter(field.rebuild_annotation())
    if _is_plain(kind):
        shown = "none" if default is None else str(default)
        return {"type": FieldValue(whole), "metavar": _metavar(kind)}, shown
    shown = json.dumps(whole.dump_python(default, mode="json"))
    return {"type": FieldValue(whole, as_json=True), "metavar": "JSON"}, shown


def _add_http(group: argparse._ArgumentGroup) -> None:
    """``--http HOST:PORT``, the one flag of two fields."""
    fields = ReceiverConfig.model_fields
    host, port = (fields[name].get_default() for name in HTTP_FIELDS)
    group.add_argument(
        "--http",
        type=http_address,
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=f"address of the HTTP API; port 0 picks a free one (default: {host}:{port})",
    )


def http_address(text: str) -> tuple[str, int]:
    """Parse ``--http``, checking host and port as their fields do."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    fields = ReceiverConfig.model_fields
    checked = []
    for name, value in zip(HTTP_FIELDS, (host, port), strict=True):
        try:
            checked.append(TypeAdapter(fields[name].rebuild_annotation()).validate_strings(value))
        except ValidationError as exc:
            part = name.removeprefix("http_")
            raise argparse.ArgumentTypeError(
                f"{part}: {reason(exc, with_location=False)}"
            ) from None
    return checked[0], checked[1]


def _without_none(annotation: Any) -> Any:
    """``X | None`` -> ``X``: None is a default, never typed on a command line."""
    if get_origin(annotation) in (Union, UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not NoneType]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _is_plain(annotation: Any) -> bool:
    """A value one word can give: text, a number, a path, a Literal, or a union of them."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_plain(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return all(_is_plain(arg) for arg in get_args(annotation) if arg is not NoneType)
    if origin is Literal:
        return True
    return isinstance(annotation, type) and issubclass(annotation, PLAIN_TYPES)


def _plain_item(kind: Any) -> Any:
    """The item type of a list or tuple whose items are plain and all alike, else None."""
    items = [arg for arg in get_args(kind) if arg is not Ellipsis]
    if get_origin(kind) not in (list, tuple) or not items:
        return None
    alike = all(item == items[0] for item in items)
    return items[0] if alike and _is_plain(items[0]) else None


def _metavar(annotation: Any) -> str | None:
    """What the value is, in usage lines; None: argparse's (the flag's name)."""
    if annotation == Endpoint:
        return "ENDPOINT"
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    names = {Path: "PATH", int: "N", float: "NUMBER"}
    return names.get(annotation) if isinstance(annotation, type) else "VALUE"


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, by field name; absent flags are not in ``args``."""
    given = {
        name: value for name, value in vars(args).items() if name in ReceiverConfig.model_fields
    }
    if "http" in args:
        given.update(zip(HTTP_FIELDS, args.http, strict=True))
    return given


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 2 on bad arguments or configuration, 1 if it cannot start."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load(args.config, overrides(args), args.entry)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    # Blocked before any thread exists, so every thread inherits the mask and
    # the signal is taken by sigwait below instead of landing in a thread
    # that cannot act on it. The default disposition first: a shell starts
    # background jobs with SIGINT ignored, and an ignored signal never arrives.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        receiver = Receiver(config)
    except zmq.ZMQError as exc:
        print(f"{PROG}: cannot bind the forwarder to {config.forward}: {exc}", file=sys.stderr)
        return 1
    app = create_app(receiver, legacy_pickle_default=config.legacy_last_frame)
    api = ApiServer(app, config.http_host, config.http_port)
    try:
        api.start()
    except (ApiServerError, OSError) as exc:
        reason = exc.reason if isinstance(exc, ApiServerError) else str(exc)
        print(
            f"{PROG}: cannot serve the HTTP API on {config.http_host}:{config.http_port} "
            f"({reason}): pass another --http HOST:PORT, or stop what holds that port",
            file=sys.stderr,
        )
        # The receiver was built, not started: it has no thread to stop, and its sockets
        # close with the process (Receiver.stop joins threads, which needs them started).
        return 1
    receiver.start()
    logger.info(
        "ready: HTTP API %s, data root %s, forwarding to %s",
        api.url,
        config.data_root.resolve(),
        receiver.forward_endpoint or "nobody",
    )
    received = signal.sigwait(STOP_SIGNALS)
    logger.info("stopping on %s", signal.Signals(received).name)
    api.stop()
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
