"""How the simulated detector refuses a request, and finds the parameter one names.

Transport-free: the HTTP layer (:mod:`sim.eiger.api`) turns a
:class:`SimplonError` into the status and reason a detector answers, so
every piece of the simulator refuses the same way, with a reason that says
what to do instead.
"""

from __future__ import annotations

from sim.eiger import parameters as params


class SimplonError(Exception):
    """A request the detector refuses: the HTTP status and the reason it answers."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_subsystem(subsystem: str) -> None:
    if subsystem not in params.SUBSYSTEMS:
        raise SimplonError(
            404, f"no subsystem {subsystem!r}; subsystems: {', '.join(params.SUBSYSTEMS)}"
        )


def section_keys(subsystem: str, section: str) -> list[str]:
    """What ``GET /<subsystem>/api/1.8.0/<section>/keys`` lists."""
    check_subsystem(subsystem)
    if section != "command" and (subsystem, section) not in params.PARAMETERS:
        raise SimplonError(404, f"{subsystem} has no {section!r} section")
    return params.listed_keys(subsystem, section)


def param_of(subsystem: str, section: str, key: str) -> params.Param:
    """The parameter ``<subsystem>/<section>/<key>`` names; 404 when there is none."""
    check_subsystem(subsystem)
    table = params.PARAMETERS.get((subsystem, section))
    if table is None:
        raise SimplonError(404, f"{subsystem} has no {section!r} section")
    param = table.get(key)
    if param is None:
        raise SimplonError(
            404, f"{subsystem} {section} has no parameter {key!r}; {section}/keys lists them"
        )
    return param


def check_command(subsystem: str, name: str) -> None:
    """404 for a command ``subsystem`` does not have, listing those it has."""
    check_subsystem(subsystem)
    if name not in params.COMMANDS[subsystem]:
        raise SimplonError(
            404,
            f"{subsystem} has no command {name!r}; commands: {', '.join(params.COMMANDS[subsystem])}",
        )
