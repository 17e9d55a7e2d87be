"""Errors raised by the wire-protocol parsers."""


class MalformedMessage(ValueError):
    """A message that does not follow its protocol; the text names what is wrong.

    ``seq`` is the message's position in the stream when it could still be read,
    so the collector can account for it instead of waiting for it.
    """

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
