"""``daq-tango``: the Tango database that ``DetectorDevice det01`` starts from.

Three steps, each also usable from tests and the demo: run pytango's own
DatabaseDS with its sqlite backend on 127.0.0.1 (no MySQL), load the
dsconfig JSON of ``tango_db_config/`` into it with dsconfig's ``json2tango``,
and register this host's Starter so that Starter can start the servers.
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tango

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "tango_db_config" / "det01.json"
STARTER = Path("/usr/lib/tango/Starter")
LOOPBACK_ORB = "giop:tcp:127.0.0.1:"
JSON2TANGO_OK = (0, 2)
"""json2tango's exit codes for "nothing to change" and "changes written"."""


class TangoDbError(RuntimeError):
    """The database could not be started, reached or loaded; the text says what to check."""


def tango_env(tango_host: str, **extra: str) -> dict[str, str]:
    """Environment for Tango processes on this machine: the database, loopback only."""
    return {**os.environ, "TANGO_HOST": tango_host, "ORBendPoint": LOOPBACK_ORB, **extra}


def database_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tango.databaseds.database",
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
                raise TangoDbError(
                    f"no Tango database answered on {tango_host} within {timeout:g} s"
                ) from None
            time.sleep(0.2)


def database(tango_host: str) -> tango.Database:
    host, _, port = tango_host.rpartition(":")
    return tango.Database(host, int(port))


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
        raise TangoDbError(f"json2tango could not load {config}: {result.stderr.strip()[-500:]}")
    return data


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
    tango_host: str, servers: Iterable[str], start_ds_path: Path = BIN, host: str | None = None
) -> str:
    """Declare this host's Starter and put ``servers`` under its control; return its device name.

    Starter finds the servers' executables in ``start_ds_path`` (the
    virtual environment's ``bin``, where ``DetectorDevice`` is installed).
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
        server.name, server.host, server.mode, server.level = name, host, 1, 1
        try:
            db.put_server_info(server)
        except tango.DevFailed:
            # The sqlite DatabaseDS stores the info, then fails to notify a Starter that is not
            # running yet; the Starter reads it from the database when it starts.
            if db.get_server_info(name).host != host:
                raise
    return starter


def starter_command(host: str | None = None) -> list[str]:
    return [str(STARTER), (host or socket.gethostname()).split(".")[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="daq-tango",
        description="Run the Tango database (sqlite, 127.0.0.1), load the DAQ configuration into it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    db = commands.add_parser("database", help="run pytango's DatabaseDS in the foreground")
    db.add_argument("--port", type=int, default=10000)
    db.add_argument("--file", type=Path, default=Path("tango_database.db"), help="sqlite file")
    load = commands.add_parser("load", help="load a dsconfig JSON and register Starter")
    load.add_argument("config", type=Path, nargs="?", default=DEFAULT_CONFIG)
    load.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="DEVICE/NAME=VALUE",
        help="override a device property, e.g. sim/detector/det01/DataRoot=/data",
    )
    load.add_argument("--no-starter", action="store_true", help="do not register Starter")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.command == "database":
        env = tango_env(f"127.0.0.1:{args.port}", PYTANGO_DATABASE_NAME=str(args.file.resolve()))
        os.execve(sys.executable, database_command(args.port), env)
    tango_host = os.environ.get("TANGO_HOST")
    if not tango_host:
        parser.error("set TANGO_HOST to the database, e.g. TANGO_HOST=127.0.0.1:10000")
    overrides = {}
    for item in args.property:
        key, sep, value = item.partition("=")
        if not sep or "/" not in key:
            parser.error(f"--property {item!r}: expected DEVICE/NAME=VALUE")
        overrides[key] = value.split(",") if "," in value else [value]
    try:
        data = load_config(args.config, tango_host, overrides)
        print(f"loaded {args.config} into {tango_host}: {', '.join(server_names(data))}")
        if not args.no_starter:
            starter = register_starter(tango_host, server_names(data))
            print(f"{starter} controls them; start it with: {' '.join(starter_command())}")
    except (TangoDbError, tango.DevFailed) as exc:
        print(f"daq-tango: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
