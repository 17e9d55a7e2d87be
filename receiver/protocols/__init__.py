"""Wire protocols: pure functions between ZeroMQ message parts and the receiver's frame model."""

from collections.abc import Callable, Sequence

from receiver.model import Buffer, Message
from receiver.protocols import stins

Parser = Callable[[Sequence[Buffer]], Message]

PARSERS: dict[str, Parser] = {"stins": stins.parse}
