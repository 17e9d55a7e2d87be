"""What the command lines of the simulators, the benchmark and the tooling share.

Bad arguments are refused in one line on stderr that names the flag, before
anything is started or created: argparse names the flag when a ``type``
below refuses a value (``argument --workers: must be at least 1, got 0``).
(Here because the simulators may import neither the tooling nor the
receiver, and both of those may import the simulators.)
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """Refuses bad arguments in one line on stderr (status 2), which a log or a script shows whole."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def tcp_port(text: str) -> int:
    """A TCP port number, 0..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0..65535)")
    return port


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def float_at_least(minimum: float) -> Callable[[str], float]:
    """A finite number of at least ``minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a finite number of at least {minimum:g}, got {text}"
            )
        return value

    return parse


def positive_seconds(text: str) -> float:
    """A finite duration of more than 0 s."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 s, got {text}")
    return value


def zmq_endpoint(text: str) -> str:
    """A ZeroMQ endpoint (tcp://, ipc://, inproc://), refused here rather than later by ZeroMQ."""
    if re.fullmatch(r"(tcp|ipc|inproc)://\S+", text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a ZeroMQ endpoint such as tcp://127.0.0.1:9999 "
            "(tcp://, ipc:// or inproc://)"
        )
    return text
