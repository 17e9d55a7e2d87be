"""camserver's TCP dialogue (Dectris Pilatus), defined once for its three speakers.

The camserver simulator answers it, the streamer's proxy forwards and reads
it and the Pilatus backend speaks it (docs/pilatus.md has the whole chain);
each copy of a command list or a reply text they kept of their own drifted
from the others, so every one of them is here. What real clients expect is
the reference: MAX IV's Pilatus client parses the reply texts with regular
expressions, LIMA's Pilatus plugin and areaDetector's driver show captures of
a real camserver. Pure text in, text out; no sockets.

Commands end in ``\\0`` (MAX IV's client), ``\\x18`` (LIMA) or ``\\n``
(areaDetector); ``\\r`` is ignored. Command words are case-insensitive and may
be abbreviated to any unique prefix (``expt``, ``ni``, ``setthr``). Every
reply is ``<code> OK|ERR <text>`` and ends in ``\\x18``:

=======================  ======================================================
command                  reply
=======================  ======================================================
``exptime [s]``          ``15 OK Exposure time set to: 0.1000000 sec.``
``expperiod [s]``        ``15 OK Exposure period set to: 0.1000000 sec``
``nimages [n]``          ``15 OK N images set to: 10``
``nexpframe [n]``        ``15 OK Exposures per frame set to: 1`` (text not verified)
``delay [s]``            ``15 OK Delay time set to: 0.0000000 sec.`` (text not verified)
``setenergy [eV]``       ``15 OK Energy setting: 12000 eV``
``setthreshold``         ``15 OK  Settings: mid gain; threshold: 6000 eV; vcmp: ...``
``setthreshold [g] eV``  ``15 OK /tmp/setthreshold.cmd`` (``g``: lowG, midG, highG, uhighG)
``imgpath [dir]``        ``10 OK /ramdisk/images/``
``exposure <file>``      ``15 OK  Starting 0.1000000 second background: <time>``,
                         later ``7 OK <path of the last file>`` (or ``7 ERR <why>``)
``exttrigger``,          the same; the series waits for one trigger for all
``extmtrigger``,         frames, one trigger per frame, or one gate per frame
``extenable <file>``
``k``, ``camcmd k``      ``13 ERR kill``, then the series' ``7 OK <last file>``
unknown                  ``1 ERR *** Unrecognized command: <word>``
refused                  ``15 ERR ERROR: <reason>`` (``10 ERR ERROR: ...`` for imgpath)
=======================  ======================================================

A setting without a value reads it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

EXPOSURE = "exposure"
"""Internal trigger: the series starts at once, frames at the exposure period."""
EXTTRIGGER = "exttrigger"
"""One external trigger starts the whole series, frames then at the exposure period."""
EXTMTRIGGER = "extmtrigger"
"""One external trigger per frame, each exposed for the exposure time."""
EXTENABLE = "extenable"
"""One external gate per frame, each exposed for as long as its gate is high."""
ACQUISITIONS = (EXPOSURE, EXTTRIGGER, EXTMTRIGGER, EXTENABLE)
BURSTS = (EXPOSURE, EXTTRIGGER)
"""The acquisitions whose frames follow one another at the exposure period."""
COMMANDS = (
    "exptime",
    "expperiod",
    "nimages",
    "nexpframe",
    "delay",
    "setenergy",
    "setthreshold",
    "imgpath",
    *ACQUISITIONS,
    "k",
    "camcmd",
)
"""Every camserver command this project's simulator, proxy or backend uses."""

READOUT_S = 0.00095
"""Pilatus3 readout time: within a burst, frames are at least exposure + readout apart."""

REPLY_END = b"\x18"
COMMAND_ENDS = re.compile(rb"([\x00\x18\n])")
"""What ends a command: each real client uses one of the three."""
SEND_END = b"\0"
"""What this project's clients end their commands with (as MAX IV's client does)."""

CODE_UNRECOGNIZED = 1
"""The code of ``ERR`` to an unknown command."""
CODE_SERIES_END = 7
"""A series' end: ``OK`` with its last file, or ``ERR`` with the reason."""
CODE_IMGPATH = 10
CODE_KILL = 13
"""``k``'s answer, ``13 ERR kill``, before the killed series' ``7``."""
CODE_COMMAND = 15
"""The code of every other reply: settings, acquisition starts, refusals."""
ERROR_PREFIX = "ERROR: "
"""How camserver's text of a refused value or start begins."""

GAINS = {"lowg": "low", "midg": "mid", "highg": "high", "uhighg": "ultra high"}
"""``setthreshold``'s gain words (any case) and how its read-back names them."""
THRESHOLD_SET = "/tmp/setthreshold.cmd"
"""The text of camserver's ``15 OK`` to a threshold it accepts (LIMA waits for it)."""

_REPLY = re.compile(r"(\d+) (OK|ERR)\b ?(.*)", re.DOTALL)
_SETTING_TEXTS = {
    "exptime": "Exposure time set to: {:.7f} sec.",
    "expperiod": "Exposure period set to: {:.7f} sec",
    "nimages": "N images set to: {:d}",
    "nexpframe": "Exposures per frame set to: {:d}",
    "delay": "Delay time set to: {:.7f} sec.",
    "setenergy": "Energy setting: {:.0f} eV",
}
READ_BACK: dict[str, tuple[re.Pattern[str], Callable[[str], float]]] = {
    "nimages": (re.compile(r"N images set to: (\d+)"), int),
    "exptime": (re.compile(r"Exposure time set to: ([-+0-9.eE]+) sec"), float),
    "expperiod": (re.compile(r"Exposure period set to: ([-+0-9.eE]+) sec"), float),
    "energy": (re.compile(r"Energy setting: ([-+0-9.eE]+) eV"), float),
}
"""The settings a ``15 OK`` reply reports, as MAX IV's client reads them from its text."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply, without its terminator: ``<code> OK|ERR <text>``."""

    code: int
    ok: bool
    text: str


def resolve_command(word: str) -> str | None:
    """The command ``word`` names: exact, or a unique prefix (case-insensitive); None if neither."""
    word = word.lower()
    if word in COMMANDS:
        return word
    matches = [name for name in COMMANDS if name.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def reply_code(command: str) -> int:
    """The code camserver answers ``command`` with, OK or ERR (10 for imgpath, else 15)."""
    return CODE_IMGPATH if command == "imgpath" else CODE_COMMAND


def is_burst(command: str, nimages: int) -> bool:
    """Whether the exposure period must exceed the exposure time by :data:`READOUT_S`."""
    return nimages > 1 and command in BURSTS


def read_commands(buffer: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """The command lines ``buffer`` completes, each with the byte that ended it, and the rest.

    A proxy forwards each line with its own terminator, so the camserver
    behind it sees what the client sent. Blank lines are no commands.
    """
    parts = COMMAND_ENDS.split(buffer)
    rest = parts.pop()
    lines = [(_line(raw), end) for raw, end in zip(parts[::2], parts[1::2], strict=True)]
    return [(line, end) for line, end in lines if line], rest


def _line(raw: bytes) -> str:
    return raw.decode("ascii", "replace").replace("\r", "").strip()


def split_command(line: str) -> tuple[str, str]:
    """A command line's word (as sent, not resolved) and its argument (stripped, may be empty)."""
    word, _, argument = line.partition(" ")
    return word, argument.strip()


def format_reply(code: int, ok: bool, text: str) -> str:
    """``<code> OK|ERR <text>``: a reply without its terminator."""
    return f"{code} {'OK' if ok else 'ERR'} {text}"


def refusal(code: int, reason: str) -> str:
    """camserver refusing a value or a start: ``<code> ERR ERROR: <reason>``."""
    return format_reply(code, False, ERROR_PREFIX + reason)


def unrecognized(word: str) -> str:
    """camserver's answer to a command it does not know (LIMA's capture)."""
    return format_reply(CODE_UNRECOGNIZED, False, f"*** Unrecognized command: {word}")


def setting_reply(command: str, value: float) -> str:
    """The ``15 OK`` text of a setting's value, to the character clients parse."""
    return format_reply(CODE_COMMAND, True, _SETTING_TEXTS[command].format(value))


def timestamp(when: datetime) -> str:
    """camserver's time format, to the millisecond: ``2024-Jun-01T12:00:00.000``."""
    return when.strftime("%Y-%b-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def starting_reply(exptime: float, when: datetime) -> str:
    """An accepted acquisition: two spaces after OK (MAX IV's client tests that prefix)."""
    return format_reply(
        CODE_COMMAND, True, f" Starting {exptime:.7f} second background: {timestamp(when)}"
    )


def threshold_reply(gain: str, threshold_ev: float) -> str:
    """``setthreshold``'s read-back: two spaces after OK and a trim-file line, as captured."""
    return format_reply(
        CODE_COMMAND,
        True,
        f" Settings: {gain} gain; threshold: {threshold_ev:.0f} eV; vcmp: 0.654 V\n"
        " Trim file:\n  (nil)",
    )


def parse_reply(text: str) -> Reply | None:
    """The reply ``text`` (without terminator) is; None if it is no ``<code> OK|ERR`` reply."""
    found = _REPLY.fullmatch(text)
    if found is None:
        return None
    return Reply(int(found[1]), found[2] == "OK", found[3])


def encode_reply(text: str) -> bytes:
    """A reply as it goes on the wire: ASCII (anything else as ``?``) and the terminator."""
    return text.encode("ascii", "replace") + REPLY_END


def read_replies(buffer: bytes) -> tuple[list[str], bytes]:
    """The replies ``buffer`` completes, without terminators, and the rest."""
    *replies, rest = buffer.split(REPLY_END)
    return [raw.decode("ascii", "replace") for raw in replies], rest


def read_back(text: str) -> dict[str, float]:
    """The settings a ``15 OK`` reply reports (:data:`READ_BACK`); nothing from any other."""
    reply = parse_reply(text)
    if reply is None or reply.code != CODE_COMMAND or not reply.ok:
        return {}
    values = {}
    for key, (pattern, kind) in READ_BACK.items():
        found = pattern.search(text)
        if found:
            try:
                values[key] = kind(found[1])
            except ValueError:
                continue
    return values


@dataclass(frozen=True, slots=True)
class SeriesNames:
    """The file names of one series, by camserver's rule (areaDetector's Pilatus doc).

    One image keeps the given name. Several are numbered after the last ``_``:
    from the number found there when it has at least 3 digits (which also give
    the width, 5 when too few for the count), otherwise from 0 with 5 digits
    after an appended ``_``: ``test6.cbf`` -> ``test6_00000.cbf``, ...;
    ``test6_014.cbf`` -> ``test6_014.cbf``, ``test6_015.cbf``, ...
    """

    given: str
    count: int
    prefix: str
    start: int
    width: int
    extension: str

    @classmethod
    def of(cls, given: str, count: int) -> SeriesNames:
        """How camserver names the ``count`` files of a series started with file name ``given``."""
        stem, dot, extension = given.rpartition(".")
        if not dot or "/" in extension or len(extension) > 4:
            stem, extension = given, ""
        else:
            extension = "." + extension
        head, underscore, last = stem.rpartition("_")
        if underscore and len(last) >= 3 and last.isascii() and last.isdigit():
            width = len(last)
            if (width == 3 and count > 999) or (width == 4 and count > 9999):
                width = 5
            return cls(given, count, head + "_", int(last), width, extension)
        prefix = stem if stem.endswith("_") else stem + "_"
        return cls(given, count, prefix, 0, 5, extension)

    def name(self, frame: int) -> str:
        """The file of ``frame`` (0-based in the series)."""
        if self.count == 1:
            return self.given
        return f"{self.prefix}{self.start + frame:0{self.width}d}{self.extension}"

    def frame_of(self, name: str) -> int | None:
        """The frame (0-based in the series) that file ``name`` holds; None if not one of ours."""
        if self.count == 1:
            return 0 if name == self.given else None
        if not (name.startswith(self.prefix) and name.endswith(self.extension)):
            return None
        digits = name[len(self.prefix) : len(name) - len(self.extension)]
        if not (digits.isascii() and digits.isdigit()) or len(digits) < self.width:
            return None
        frame = int(digits) - self.start
        if not 0 <= frame < self.count or digits != f"{int(digits):0{self.width}d}":
            return None
        return frame
