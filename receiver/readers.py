"""The stream readers the receiver offers: one wire protocol (``protocols``) per ``protocol`` setting.

``PROTOCOLS`` names every stream the receiver reads (the ``protocol`` setting).
STINS numbers its messages across the whole stream (``msg_number``); the
others number them per series only, and their :class:`SeriesRules` tell the
series reorderer (``receiver/series_reorder.py``) what it cannot learn from
the message model alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocols import eiger_stream1, eiger_stream2, sls, stins
from protocols.model import Buffer, Image, Message, SeriesStart

Parser = Callable[[Sequence[Buffer]], Message]


@dataclass(frozen=True, slots=True)
class SeriesRules:
    """How a protocol numbered per series opens and completes its series."""

    opener: Callable[[Image], SeriesStart] | None = None
    """Makes the header of a series from one of its frames, for streams that send
    no header (SLS); None when every series starts with a header message."""
    last_frame: Callable[[Image], bool] | None = None
    """True for a frame known to be the last of its series, for streams whose
    header does not announce the number of frames."""


@dataclass(frozen=True, slots=True)
class Protocol:
    """A wire protocol as the receiver uses it."""

    parse: Parser
    series: SeriesRules | None = None
    """None: ordered by a stream-wide number (STINS); else ordered per series."""


PROTOCOLS: dict[str, Protocol] = {
    "stins": Protocol(stins.parse),
    "dectris-v1": Protocol(eiger_stream1.parse, SeriesRules()),
    "dectris-v2": Protocol(eiger_stream2.parse, SeriesRules()),
    "sls": Protocol(sls.parse, SeriesRules(opener=sls.opener, last_frame=sls.is_last_frame)),
}

PARSERS: dict[str, Parser] = {name: protocol.parse for name, protocol in PROTOCOLS.items()}
