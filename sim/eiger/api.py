"""SIMPLON 1.8 over HTTP for the simulated Eiger, answered as a detector control unit does.

Clients this was checked against, and what they rely on:

- Dectris' ``DEigerClient``: ``GET /<module>/api/version/``; GET with
  ``Accept: application/json; charset=utf-8``; PUT of ``{"value": v}`` as JSON,
  or of an empty body with ``Content-type: text/html`` for commands; any status
  outside 2xx raises with the body; a JSON content type is parsed, anything
  else returned raw (so a command without an answer has an empty, non-JSON body).
- areaDetector's ADEiger (C): ``GET /detector/api/version`` without the final
  slash; commands as ``Content-Type: application/json`` with ``Content-Length: 0``;
  only status 200 counts as success; ``arm`` answers ``{"sequence id": n}``;
  an ``allowed_values`` field makes a parameter an enumeration; the answer to a
  small request is read with one ``recv`` of 512 bytes (see :mod:`sim.eiger.server`).
- DLS's fastcs-eiger: introspects ``<section>/keys`` then GETs each key (plus
  ``wavelength`` and the ``error`` status, served but not listed); PUTs
  ``application/json`` with no body for commands.

Refusals answer ``text/plain`` with the reason: 404 for an unknown subsystem,
section, key, command or API version, 400 for a refused value or command.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from sim.eiger.detector import EigerDetector, SimplonError
from sim.eiger.parameters import API_VERSION

NO_VALUE = object()


def create_app(detector: EigerDetector) -> FastAPI:
    """The HTTP API over ``detector``; no documentation routes, as on a detector."""
    app = FastAPI(title="EIGER simulator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(SimplonError)
    async def refused(request: Request, exc: SimplonError) -> Response:
        return PlainTextResponse(exc.reason, status_code=exc.status)

    @app.get("/{subsystem}/api/version")
    @app.get("/{subsystem}/api/version/")
    def version(subsystem: str) -> Response:
        detector.keys(subsystem, "config")  # 404 for an unknown subsystem
        return JSONResponse({"value": API_VERSION, "value_type": "string"})

    @app.get("/{subsystem}/api/{api}/keys")
    def sections(subsystem: str, api: str) -> Response:
        _check_version(api)
        detector.keys(subsystem, "config")
        return JSONResponse(["command", "config", "status"])

    @app.get("/{subsystem}/api/{api}/{section}/{key:path}")
    def get(subsystem: str, api: str, section: str, key: str) -> Response:
        _check_version(api)
        if subsystem == "filewriter" and section == "files" and not key:
            return JSONResponse([])  # the simulator writes no files
        if not key:
            raise SimplonError(404, f"name a parameter: {subsystem}/api/{api}/{section}/keys")
        if key == "keys":
            return JSONResponse(detector.keys(subsystem, section))
        if section == "command":
            raise SimplonError(405, f"{key} is a command: PUT it")
        return JSONResponse(detector.describe(subsystem, section, key))

    @app.put("/{subsystem}/api/{api}/{section}/{key:path}")
    async def put(subsystem: str, api: str, section: str, key: str, request: Request) -> Response:
        _check_version(api)
        body = await request.body()
        if section == "config":
            value = _value(body)
            if value is NO_VALUE:
                raise SimplonError(
                    400, f'{key}: send the new value as a JSON body {{"value": ...}}'
                )
            changed = await run_in_threadpool(detector.configure, subsystem, key, value)
            return JSONResponse(changed)
        if section == "command":
            value = _value(body) if key == "trigger" else NO_VALUE
            argument = None if value is NO_VALUE else value
            answer = await run_in_threadpool(detector.command, subsystem, key, argument)
            return Response() if answer is None else JSONResponse(answer)
        detector.keys(subsystem, section)  # 404 for an unknown section
        raise SimplonError(405, f"{subsystem} {section} parameters are read-only")

    return app


def _check_version(api: str) -> None:
    if api != API_VERSION:
        raise SimplonError(
            404, f"SIMPLON API version {api} is not served here; this detector speaks {API_VERSION}"
        )


def _value(body: bytes) -> Any:
    """The ``value`` of a ``{"value": v}`` body; NO_VALUE for an empty body."""
    if not body.strip():
        return NO_VALUE
    try:
        document = json.loads(body)
    except ValueError:
        raise SimplonError(400, 'the body is not JSON: send {"value": ...}') from None
    if not isinstance(document, dict) or "value" not in document:
        raise SimplonError(400, 'the body must be a JSON object {"value": ...}')
    return document["value"]
