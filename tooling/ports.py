"""Free TCP ports on 127.0.0.1 for the simulators, demos, benchmark and tests."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_run(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive free ports (a simulator binding port, port + 1, ...)."""
    for _ in range(attempts):
        base = free_port()
        if base + count > 65536:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise OSError(f"no run of {count} free ports found in {attempts} attempts")
