"""Errors raised by the wire-protocol parsers."""

from __future__ import annotations

from collections.abc import Hashable


class MalformedMessage(ValueError):
    """A message that does not follow its protocol; the text names what is wrong.

    ``seq`` is the message's position in the stream when it could still be read,
    so the collector can account for it instead of waiting for it. Protocols
    numbered per series (Dectris, SLS) also give the ``series`` it belongs to.
    """

    def __init__(self, reason: str, seq: int | None = None, series: Hashable | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.series = series
