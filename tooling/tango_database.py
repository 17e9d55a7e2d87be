"""The Tango database ``daq-tango database`` runs: pytango's DatabaseDS (sqlite), Starter-safe.

pytango's sqlite DatabaseDS tells a host's Starter (``tango/admin/<host>``,
command ``UpdateServersInfo``) that its servers changed whenever a server
exports itself or its server info is written. It does that inside the
client's database command and catches only ``DevFailed``, while
``proxy.UpdateServersInfo()`` on a Starter that is registered but not
running raises ``AttributeError`` (pytango turns the failed command-list
query of an unexported device into one). So while a Starter is registered
and not running, ``DbExportDevice`` fails: ``DetectorDevice det01`` exits at
start with ``UpdateServersInfo ... Device tango/admin/<host> is not
exported``, and ``DbPutServerInfo`` fails after storing the info.

This module runs pytango's DatabaseDS with the notification made safe, as
the C++ database's never fails a client's command: a Starter that the
database's own tables show as not exported is not called (it reads the
database when it starts), an exported one is called through
``command_inout`` with a short timeout, and whatever goes wrong is logged,
never raised. The call stays in the command's thread, as pytango makes it: a
proxy made by name asks the database itself for the Starter's address, which
from another thread, while the command still holds the database device,
waits out Tango's 3 s timeout and blocks every client meanwhile.

``python -m tooling.tango_database [DatabaseDS options] 2`` takes
DatabaseDS's own options (``--host``, ``--port``, the instance name).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import tango
from tango.databaseds import database
from tango.databaseds.db_access import sqlite3 as sqlite_access

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT_MS = 1000
"""How long a running Starter gets to take ``UpdateServersInfo`` (it only sets a flag)."""


def starter_devices(hostnames: Iterable[str]) -> list[str]:
    """The Starter devices of ``hostnames`` (Starter always uses the short host name)."""
    return sorted(
        {f"tango/admin/{name.strip().split('.')[0]}" for name in hostnames if name.strip()}
    )


def _send_starter_cmd(self: sqlite_access.SqlDatabase, hostnames: list[str]) -> None:
    """Replaces ``SqlDatabase._send_starter_cmd``: notify, never fail the client's command."""
    for name in starter_devices(hostnames):
        if not _exported(self, name):
            logger.info("%s is not running; it reads the database when it starts", name)
            continue
        try:
            starter = tango.DeviceProxy(name)
            starter.set_timeout_millis(NOTIFY_TIMEOUT_MS)
            starter.command_inout("UpdateServersInfo")
        except Exception as exc:  # a Starter that cannot be told is no error of the command
            reason = exc.args[-1].desc.strip() if isinstance(exc, tango.DevFailed) else repr(exc)
            logger.warning("%s did not take UpdateServersInfo: %s", name, reason)


def _exported(db: sqlite_access.SqlDatabase, name: str) -> bool:
    """Whether the database's tables show ``name`` exported (no proxy, no call to itself)."""
    try:
        (exported, _pid), _strings = db.import_device(name)
    except tango.DevFailed:
        return False  # not defined
    return bool(exported)


def install() -> None:
    """Make pytango's sqlite database notify Starters without failing its clients' commands."""
    sqlite_access.SqlDatabase._send_starter_cmd = _send_starter_cmd


def main(argv: list[str] | None = None) -> None:
    install()
    database.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
