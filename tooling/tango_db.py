"""``daq-tango``: the Tango database that ``DetectorDevice det01`` starts from.

Three steps, each also usable from tests and the demo: run pytango's own
DatabaseDS with its sqlite backend on 127.0.0.1 (no MySQL; through
:mod:`tooling.tango_database`, so that a registered Starter that is not running
never makes a server fail), load the dsconfig JSON of ``tango_db_config/``
into it with dsconfig's ``json2tango``, and register this host's Starter so
that Starter can start the servers. ``daq-tango wait DEVICE`` waits until a
device answers, for scripts that start a server in the background.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tango

from sim.cli_support import OneLineParser, float_at_least, int_at_least, tcp_port

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "tango_db_config" / "det01.json"
STARTER = Path("/usr/lib/tango/Starter")
LOOPBACK_ORB = "giop:tcp:127.0.0.1:"
JSON2TANGO_OK = (0, 2)
"""json2tango's exit codes for "nothing to change" and "changes written"."""
MANUAL_START = 0
START_RETRY_S = 10.0
"""How long ``daq-tango start`` waits for the server's devices before it sends DevStart again."""
"""Startup level of a server Starter starts on ``DevStart`` only, not when Starter itself starts."""


class TangoDbError(RuntimeError):
    """The database could not be started, reached or loaded; the text says what to check."""


def tango_env(tango_host: str, **extra: str) -> dict[str, str]:
    """Environment for Tango processes on this machine: the database, loopback only."""
    return {**os.environ, "TANGO_HOST": tango_host, "ORBendPoint": LOOPBACK_ORB, **extra}


def database_command(port: int) -> list[str]:
    """pytango's DatabaseDS (sqlite) on 127.0.0.1:``port``, notifying Starters safely."""
    return [
        sys.executable,
        "-m",
        "tooling.tango_database",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "2",
    ]


def start_database(
    port: int, db_file: Path, log: Path, timeout: float = 30
) -> subprocess.Popen[bytes]:
    """Start DatabaseDS (sqlite file ``db_file``) on 127.0.0.1:``port``; return once it answers."""
    tango_host = f"127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            database_command(port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=tango_env(tango_host, PYTANGO_DATABASE_NAME=str(db_file)),
        )
    try:
        wait_for_database(tango_host, timeout, proc)
    except TangoDbError:
        proc.kill()
        proc.wait()
        raise
    return proc


def wait_for_database(
    tango_host: str, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise TangoDbError(
                f"the Tango database on {tango_host} exited with code {proc.returncode}"
            )
        try:
            database(tango_host).get_info()
            return
        except tango.DevFailed:
            if time.monotonic() > deadline:
                port = tango_host.rpartition(":")[2]
                raise TangoDbError(
                    f"no Tango database answered on {tango_host} within {timeout:g} s: is it "
                    f"running? (daq-tango database --port {port})"
                ) from None
            time.sleep(0.2)


def database(tango_host: str) -> tango.Database:
    host, port = split_tango_host(tango_host)
    return tango.Database(host, port)


def split_tango_host(tango_host: str) -> tuple[str, int]:
    """``HOST:PORT`` (the first of a comma-separated list) -> (host, port); TangoDbError if not."""
    host, colon, port = tango_host.split(",", maxsplit=1)[0].strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise TangoDbError(f"TANGO_HOST={tango_host!r} is not HOST:PORT, e.g. 127.0.0.1:10000")
    return host, int(port)


def load_config(
    config: Path, tango_host: str, properties: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """Write ``config`` (dsconfig JSON) into the database, with ``properties`` overriding.

    ``properties`` maps ``device/PropertyName`` to its value lines, for what
    differs per machine (ports, data root). Returns the configuration loaded.
    """
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise TangoDbError(f"cannot read the Tango configuration {config}: {exc}") from None
    if not isinstance(data, dict):
        raise TangoDbError(f"the Tango configuration {config} is not a JSON object")
    for key, value in (properties or {}).items():
        device, _, name = key.rpartition("/")
        _device_entry(data, device)["properties"][name] = list(value)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        json.dump(data, tmp)
    try:
        result = subprocess.run(
            [str(BIN / "json2tango"), "--write", "--update", "--no-colors", tmp.name],
            env=tango_env(tango_host),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TangoDbError(f"json2tango could not load {config}: {exc}") from None
    finally:
        os.unlink(tmp.name)
    if result.returncode not in JSON2TANGO_OK:
        raise TangoDbError(f"json2tango could not load {config}: {_reason(result.stderr)}")
    return data


def _reason(output: str) -> str:
    """The gist of a Tango tool's error output: its last DevError description, or its last line."""
    descriptions = [
        line.split("=", 1)[1].strip()
        for line in output.splitlines()
        if line.strip().startswith("desc =")
    ]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return (descriptions or lines or ["no error output"])[-1]


def _device_entry(data: dict[str, Any], device: str) -> dict[str, Any]:
    for instances in data.get("servers", {}).values():
        for classes in instances.values():
            for devices in classes.values():
                for name, entry in devices.items():
                    if name.lower() != device.lower():
                        continue
                    if not isinstance(entry, dict):
                        raise TangoDbError(f"device {device!r}: its configuration is not an object")
                    entry.setdefault("properties", {})
                    return entry
    raise TangoDbError(f"device {device!r} is not in the configuration")


def server_names(data: Mapping[str, Any]) -> list[str]:
    """``Server/instance`` of every server in a dsconfig document."""
    return [
        f"{server}/{instance}"
        for server, instances in data.get("servers", {}).items()
        for instance in instances
    ]


def register_starter(
    tango_host: str,
    servers: Iterable[str],
    start_ds_path: Path = BIN,
    host: str | None = None,
    level: int = MANUAL_START,
) -> str:
    """Declare this host's Starter and put ``servers`` under its control; return its device name.

    Starter finds the servers' executables in ``start_ds_path`` (the
    virtual environment's ``bin``, where ``DetectorDevice`` is installed).
    ``level`` is the servers' startup level: 0 (the default) starts a server
    on ``DevStart`` only; from 1 on, Starter also starts it when Starter
    itself starts, level by level. (With pytango's sqlite database, Starter
    lists a server only once it has run on this host, so a level above 0
    starts it at Starter's start only from then on.)
    """
    host = (host or socket.gethostname()).split(".")[0]
    db = database(tango_host)
    starter = f"tango/admin/{host}"
    info = tango.DbDevInfo()
    info.name, info._class, info.server = starter, "Starter", f"Starter/{host}"
    db.add_device(info)
    db.put_device_property(starter, {"StartDsPath": [str(start_ds_path)]})
    for name in servers:
        server = tango.DbServerInfo()
        server.name, server.host, server.mode, server.level = name, host, 1, level
        try:
            db.put_server_info(server)
        except tango.DevFailed:
            # pytango's own sqlite DatabaseDS (not the one of daq-tango database) stores the
            # info, then fails to notify a Starter that is not running yet; the Starter reads
            # the info from the database when it starts.
            if db.get_server_info(name).host != host:
                raise
    return starter


def starter_command(host: str | None = None) -> list[str]:
    return [str(STARTER), (host or socket.gethostname()).split(".")[0]]


def wait_for_device(tango_host: str, device: str, timeout: float) -> None:
    """Return once ``device`` answers a ping; TangoDbError naming what to check after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tango.DeviceProxy(f"tango://{tango_host}/{device}").ping()
            return
        except tango.DevFailed as exc:
            if time.monotonic() > deadline:
                raise TangoDbError(
                    f"{device} did not answer within {timeout:g} s on {tango_host}: is its "
                    f"server running? ({_desc(exc)})"
                ) from None
            time.sleep(0.2)


def starter_device(host: str | None = None) -> str:
    """This host's Starter device (Starter uses the short host name)."""
    return f"tango/admin/{(host or socket.gethostname()).split('.')[0]}"


def start_server(tango_host: str, server: str, timeout: float) -> None:
    """``DevStart`` ``server`` on this host's Starter; return once all its devices answer.

    A server already running is not started again. Starter can drop a
    ``DevStart`` that comes while its check of an earlier start is still
    pending (four seconds after that start): the ``DevStart`` is sent again
    after :data:`START_RETRY_S` without an answer (a server that starts twice
    exits at once, see ``DetectorDevice``). TangoDbError says what to check.
    """
    starter = starter_device()
    wait_for_device(tango_host, starter, timeout)
    devices = database(tango_host).get_device_class_list(server)[::2]
    if not devices:
        raise TangoDbError(f"{server} has no device in the database: load it first")
    deadline = time.monotonic() + timeout
    while True:
        try:
            _proxy(tango_host, starter).DevStart(server)
        except tango.DevFailed as exc:
            if "already running" not in exc.args[0].desc:
                raise TangoDbError(f"{starter} did not start {server}: {_desc(exc)}") from None
        try:
            for device in devices:
                left = max(0.0, deadline - time.monotonic())
                wait_for_device(tango_host, device, min(START_RETRY_S, left))
            return
        except TangoDbError:
            if time.monotonic() >= deadline:
                raise


def stop_server(tango_host: str, server: str, timeout: float) -> None:
    """``DevStop`` ``server`` on this host's Starter; return once the server has ended.

    Starter sees a server running a few seconds after it answers (it lists
    processes every second and pings every two), and refuses ``DevStop``
    before: this waits for that first.
    """
    starter = _proxy(tango_host, starter_device())
    admin = _proxy(tango_host, f"dserver/{server}")
    deadline = time.monotonic() + timeout
    while server not in _running(starter):
        if not answers(admin):
            raise TangoDbError(f"{server} is not running")
        if time.monotonic() > deadline:
            raise TangoDbError(f"{starter_device()} does not see {server} running")
        time.sleep(0.2)
    pid = database(tango_host).get_device_info(f"dserver/{server}").pid
    try:
        starter.DevStop(server)
    except tango.DevFailed as exc:
        raise TangoDbError(f"{starter_device()} did not stop {server}: {_desc(exc)}") from None
    while answers(admin) or _process_exists(pid):
        if time.monotonic() > deadline:
            raise TangoDbError(f"{server} (pid {pid}) still runs {timeout:g} s after DevStop")
        time.sleep(0.2)


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (0: unknown, taken as ended)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its parent has not collected it yet


def _running(starter: tango.DeviceProxy) -> list[str]:
    try:
        return list(starter.DevGetRunningServers(True) or [])
    except tango.DevFailed as exc:
        raise TangoDbError(f"{starter.dev_name()} does not answer: {_desc(exc)}") from None


def _proxy(tango_host: str, device: str) -> tango.DeviceProxy:
    return tango.DeviceProxy(f"tango://{tango_host}/{device}")


def answers(device: tango.DeviceProxy) -> bool:
    """Whether the device's server answers a ping now."""
    try:
        device.ping()
    except tango.DevFailed:
        return False
    return True


def _desc(exc: tango.DevFailed) -> str:
    """The most telling error of a DevFailed, on one line (not CORBA's own, when Tango's follows)."""
    errors = [e for e in exc.args if e.reason != "API_CorbaException"] or list(exc.args)
    return " ".join(str(errors[0].desc).split()) if errors else str(exc)


def _port_free(port: int) -> bool:
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="daq-tango",
        description="Run the Tango database (sqlite, 127.0.0.1), load the DAQ configuration "
        "into it, wait for a device, start and stop servers through this host's Starter. All but "
        "database read the database's address from TANGO_HOST.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db = commands.add_parser(
        "database", help="run pytango's DatabaseDS (sqlite) on 127.0.0.1 in the foreground"
    )
    db.add_argument(
        "--port", type=tcp_port, default=10000, help="TCP port to listen on (default %(default)s)"
    )
    db.add_argument(
        "--file",
        type=Path,
        default=Path("tango_database.db"),
        help="the sqlite file, created if missing (default %(default)s)",
    )
    load = commands.add_parser("load", help="load a dsconfig JSON and register Starter")
    load.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=DEFAULT_CONFIG,
        help="dsconfig JSON (default tango_db_config/det01.json)",
    )
    load.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="DEVICE/NAME=VALUE",
        help="override a device property, e.g. sim/detector/det01/DataRoot=/data; "
        "a comma separates the lines of a multi-line value (default: none)",
    )
    load.add_argument(
        "--no-starter",
        action="store_true",
        help="do not register this host's Starter (default: register it)",
    )
    load.add_argument(
        "--startup-level",
        type=int_at_least(0),
        default=MANUAL_START,
        metavar="N",
        help="the servers' Starter startup level: 0 starts them on DevStart only, 1 or more "
        "also when Starter starts (default %(default)s)",
    )
    load.add_argument(
        "--wait",
        type=float_at_least(0),
        default=15.0,
        metavar="S",
        help="how long to wait for the database to answer (default %(default)s s)",
    )
    wait = commands.add_parser(
        "wait", help="wait until a device answers (its server started and exported)"
    )
    wait.add_argument("device", help="the device, e.g. sim/detector/det01 or tango/admin/<host>")
    wait.add_argument(
        "--timeout",
        type=float_at_least(0),
        default=60.0,
        metavar="S",
        help="give up after S seconds (default %(default)s)",
    )
    for name, does in (
        ("start", "DevStart a server on this host's Starter, and wait until its devices answer"),
        ("stop", "DevStop a server on this host's Starter, and wait until it has ended"),
    ):
        command = commands.add_parser(name, help=does, description=does + ".")
        command.add_argument("server", help="the server, e.g. DetectorDevice/det01")
        command.add_argument(
            "--timeout",
            type=float_at_least(0),
            default=60.0,
            metavar="S",
            help="give up after S seconds (default %(default)s)",
        )
    return parser


def _overrides(parser: OneLineParser, items: list[str]) -> dict[str, list[str]]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key.count("/") != 3:
            parser.error(
                f"--property {item!r}: expected DEVICE/NAME=VALUE, e.g. "
                "sim/detector/det01/DataRoot=/data"
            )
        overrides[key] = value.split(",") if "," in value else [value]
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="daq-tango: %(message)s")
    if args.command == "database":
        db_file = args.file.resolve()
        if args.port == 0:
            parser.error("--port: give the port clients will use in TANGO_HOST, not 0")
        if not db_file.parent.is_dir():
            parser.error(f"--file {args.file}: no directory {db_file.parent}; create it first")
        if not _port_free(args.port):
            print(
                f"daq-tango: --port {args.port}: 127.0.0.1:{args.port} is in use (a Tango "
                "database already?); choose another --port or stop what holds it",
                file=sys.stderr,
            )
            return 1
        env = tango_env(f"127.0.0.1:{args.port}", PYTANGO_DATABASE_NAME=str(db_file))
        os.execve(sys.executable, database_command(args.port), env)
    tango_host = os.environ.get("TANGO_HOST")
    if not tango_host:
        parser.error("set TANGO_HOST to the database, e.g. TANGO_HOST=127.0.0.1:10000")
    try:
        split_tango_host(tango_host)
    except TangoDbError as exc:
        parser.error(str(exc))
    if args.command in ("wait", "start", "stop"):
        return _wait(tango_host, args)
    if not args.config.is_file():
        parser.error(f"{args.config}: no such file; give a dsconfig JSON such as {DEFAULT_CONFIG}")
    overrides = _overrides(parser, args.property)
    try:
        devices = json.loads(args.config.read_text())
        for key in overrides:
            _device_entry(devices, key.rpartition("/")[0])
    except (OSError, ValueError, AttributeError) as exc:
        parser.error(f"{args.config}: not a dsconfig JSON document ({exc})")
    except TangoDbError as exc:
        parser.error(f"--property: {exc} {args.config}")
    return _one_line(lambda: _load(tango_host, args, overrides))


def _load(tango_host: str, args: argparse.Namespace, overrides: dict[str, list[str]]) -> None:
    wait_for_database(tango_host, args.wait)
    data = load_config(args.config, tango_host, overrides)
    print(f"loaded {args.config} into {tango_host}: {', '.join(server_names(data))}")
    if not args.no_starter:
        starter = register_starter(tango_host, server_names(data), level=args.startup_level)
        when = "on DevStart" if args.startup_level == MANUAL_START else "when it starts"
        print(f"{starter} starts them {when}; run it with: {' '.join(starter_command())}")


def _wait(tango_host: str, args: argparse.Namespace) -> int:
    """``wait``, ``start`` and ``stop``: one line on success, one on failure."""
    return _one_line(lambda: _wait_for(tango_host, args))


def _wait_for(tango_host: str, args: argparse.Namespace) -> None:
    if args.command == "wait":
        wait_for_device(tango_host, args.device, args.timeout)
        print(f"{args.device} answers")
    elif args.command == "start":
        start_server(tango_host, args.server, args.timeout)
        print(f"{args.server} started by {starter_device()}, its devices answer")
    else:
        stop_server(tango_host, args.server, args.timeout)
        print(f"{args.server} stopped by {starter_device()}")


def _one_line(action: Callable[[], None]) -> int:
    """Run one command: exit status 0, or 1 with its failure as one line on stderr."""
    try:
        action()
    except TangoDbError as exc:
        print(f"daq-tango: {exc}", file=sys.stderr)
        return 1
    except tango.DevFailed as exc:
        print(f"daq-tango: {_desc(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
