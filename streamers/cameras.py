"""Which adapter serves which SDK, imported only when chosen (a site has one SDK installed)."""

from __future__ import annotations

import importlib

from streamers.camera_adapter import CameraAdapter, CameraError

ADAPTERS = {
    "andor": "streamers.camera_andor:AndorAdapter",
    "dcam": "streamers.camera_dcam:DcamAdapter",
}
LIBRARY_VARIABLES = {"andor": "ANDOR_SDK_LIBRARY", "dcam": "DCAM_SDK_LIBRARY"}
"""Where each binding looks for its SDK's library when no path is given."""


def open_adapter(
    sdk: str, library: str | None, index: int = 0, pixel_encoding: str = "Mono16"
) -> CameraAdapter:
    """Camera ``index`` of ``sdk`` ('andor' or 'dcam'); CameraError with the SDK's words."""
    target = ADAPTERS.get(sdk)
    if target is None:
        raise CameraError(f"unknown camera SDK {sdk!r}: use {' or '.join(ADAPTERS)}")
    module_name, _, class_name = target.partition(":")
    adapter_class = getattr(importlib.import_module(module_name), class_name)
    adapter: CameraAdapter = adapter_class(library or None, index, pixel_encoding)
    return adapter
