"""The receiver's configuration: one validated model, read from a file and/or flags."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

from receiver import maxiv_config
from receiver.nexus import DETECTOR_FIELDS
from receiver.readers import PARSERS
from receiver.transforms import TransformList

SHARED_RCVHWM = 16


def _zmq_endpoint(value: str) -> str:
    """Refuse a bare host:port here, with the form to use, rather than later in ZeroMQ."""
    if re.fullmatch(r"(tcp|ipc|inproc)://\S+", value) is None:
        raise ValueError(
            f"{value!r} is not a ZeroMQ endpoint such as tcp://127.0.0.1:9999 "
            "(tcp://, ipc:// or inproc://)"
        )
    return value


def _identifier(value: str) -> str:
    """Names become HDF5 group names and status keys: nothing a path or a reader trips on."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) is None:
        raise ValueError(
            f"{value!r} is not a name: letters, digits and _, not starting with a digit"
        )
    return value


def _known_protocol(value: str) -> str:
    """A protocol the receiver has a reader for (receiver.readers)."""
    if value not in PARSERS:
        raise ValueError(f"unknown protocol {value!r}; known: {', '.join(sorted(PARSERS))}")
    return value


# Checked by functions rather than Field(pattern=...), so that a refusal says
# what is wanted in words, not as a regular expression; and as types rather
# than model validators, so that the command line can check one flag alone.
Endpoint = Annotated[str, AfterValidator(_zmq_endpoint)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Protocol = Annotated[str, AfterValidator(_known_protocol)]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


class ModuleConfig(BaseModel):
    """One module of a multi-module detector: its stream and its place in the full image.

    Without ``x`` and ``y`` the module's series headers place it (``x``,
    ``y``, ``rotation`` in degrees and ``full_shape`` in their 2nd part, as
    MAX IV's Lambda streamers send them): then no module of the detector may
    be placed here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Identifier = Field(
        description="the module's name in errors, the status and the file "
        "(/entry/instrument/<detector>/<name>, an NXdetector_module)",
    )
    connect: Endpoint = Field(description="ZeroMQ endpoint of the module's STINS stream")
    x: NonNegativeInt | None = Field(
        None,
        description="column of the full image where the module starts (none: its header says)",
    )
    y: NonNegativeInt | None = Field(
        None, description="row of the full image where the module starts (none: its header says)"
    )
    rotation: StrictInt | None = Field(
        None,
        description="quarter turns counter-clockwise (as numpy.rot90) that turn the module's "
        "frame the way it sits in the full image; x and y place the turned frame (none: 0, or "
        "what its header says when x and y are left out too)",
    )

    @property
    def placed(self) -> bool:
        """The configuration places it (x and y given); otherwise its headers do."""
        return self.x is not None and self.y is not None

    @model_validator(mode="after")
    def _placed_or_not(self) -> ModuleConfig:
        if (self.x is None) != (self.y is None):
            raise ValueError(
                f"module {self.name!r}: give both x and y, or neither (its headers then place it)"
            )
        if self.rotation is not None and not self.placed:
            raise ValueError(
                f"module {self.name!r}: a rotation needs x and y too; without them the "
                "module's headers place it, rotation included"
            )
        return self


class ReceiverConfig(BaseModel):
    """Everything a receiver instance needs; validated once, passed down, never global."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: list[Endpoint] = Field(
        default=["tcp://127.0.0.1:9999"],
        min_length=1,
        description="ZeroMQ endpoints of the stream; every worker connects a PULL socket to each",
    )
    protocol: Protocol = Field(
        default="stins",
        description="wire protocol of the stream: stins, dectris-v1 (Eiger stream v1, JSON), "
        "dectris-v2 (Eiger stream v2, CBOR) or sls (SLS detector JSON header, one module)",
    )
    socket: Literal["pull", "sub"] = Field(
        default="pull",
        description="socket type the workers connect: pull (a PUSH stream: STINS, Dectris) or "
        "sub (a PUB stream, such as the SLS receiver's; one worker, and a PUB sender drops "
        "what a slow receiver cannot take)",
    )
    workers: int = Field(default=2, ge=1, le=64, description="parallel receiving threads")
    transforms: TransformList = Field(
        default_factory=list,
        description="per-frame transforms the workers apply, in order, e.g. "
        '[{"kind": "cbf"}, {"kind": "rotate", "k": 1}] (receiver/transforms)',
    )
    io_threads: int = Field(default=1, ge=1, le=16, description="ZeroMQ I/O threads")
    rcvhwm: int | None = Field(
        default=None,
        ge=1,
        description="messages ZeroMQ may queue per worker (none: 16 shared by the workers, "
        "at least 2 each); with the frame size this sets the memory a slow writer can fill",
    )
    forward: Endpoint | None = Field(
        default=None, description="endpoint the forwarder binds its PUSH socket to"
    )
    forward_hwm: int = Field(default=16, ge=1, description="ZeroMQ send high-water mark")
    forward_buffer_bytes: int = Field(
        default=256 * 1024**2,
        ge=0,
        description="bytes of frames held for a slow forwarding consumer before frames are missed",
    )
    forward_modules: Literal["stacked", "assembled"] = Field(
        default="stacked",
        description="how a multi-module frame is forwarded: 'stacked', the modules' chunks as "
        "received in one message [K, H, W] (keeps up at any rate; the header's module_layout "
        "says where each goes), or 'assembled', the full image (a decode and encode per frame; "
        "MAX IV's form)",
    )
    http_host: str = Field(default="127.0.0.1", description="address of the HTTP API")
    http_port: int = Field(default=5000, ge=0, le=65535, description="port of the HTTP API")
    data_root: Path = Field(
        default=Path("."), description="directory every file name is resolved inside"
    )
    write: bool = Field(default=True, description="write HDF5 files (off: receive and forward)")
    detector_name: Identifier = Field(
        default="detector",
        description="name of the NXdetector group: /entry/instrument/<name>/data",
    )
    writer_queue: int = Field(default=2, ge=1, description="batches queued for the writer")
    batch_bytes: int = Field(
        default=32 * 1024**2,
        ge=1,
        description="bytes of frames handed on at once between threads (at least one frame)",
    )
    reorder_window: int = Field(default=1024, ge=1, description="messages held for reordering")
    reorder_bytes: int = Field(
        default=64 * 1024**2, ge=1, description="bytes of frames held for reordering"
    )
    gap_timeout: float = Field(
        default=2.0, gt=0, description="seconds to wait for a missing message before skipping it"
    )
    switch_interval_s: float = Field(
        default=0.0005,
        gt=0,
        description="Python's thread switch interval, set for the whole process at start: "
        "the writer gets the GIL back quickly after each batch while the workers are busy",
    )
    malloc_keep_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="freed memory the receiver's process keeps for the next frames instead of "
        "returning it to the system, with blocks up to 32 MB from malloc's heaps (glibc; "
        "receiver/malloc_tuning.py); 0: glibc's defaults",
    )
    legacy_last_frame: bool = Field(
        default=False,
        description="GET /last_frame answers MAX IV's pickled [header, bytes] unless asked "
        "otherwise (set by a MAX IV YAML configuration, whose live-view clients expect it)",
    )
    min_free_bytes: int = Field(
        default=256 * 1024**2,
        ge=0,
        description="stop writing and close the file cleanly when the disk has less free space",
    )
    flush_interval: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="seconds between flushes of the open file: what readers see while the "
        "series runs, and what a killed receiver leaves readable",
    )
    max_frames: int = Field(
        default=10_000_000,
        ge=1,
        description="frame numbers from this on are refused when the header announces no count "
        "(one absurd number must not make the file or the memory huge)",
    )
    modules: list[ModuleConfig] = Field(
        default_factory=list,
        description="a multi-module detector (XSpectrum Lambda): one STINS stream per module, "
        "matched by frame number; 'workers' then counts per module and 'connect' is not used",
    )
    full_shape: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None,
        description="rows and columns of the full image the modules are placed in (modules; "
        "when the modules' headers place them, the one most headers name unless given)",
    )
    fill_value: StrictInt | StrictFloat | Literal["max"] = Field(
        default="max",
        description="pixels of the full image no module covers, and of a module that sent "
        "nothing for a frame; 'max': the largest value of the pixel type (the Dectris mark)",
    )

    @property
    def worker_rcvhwm(self) -> int:
        return self.rcvhwm or max(2, SHARED_RCVHWM // self.workers)

    @model_validator(mode="after")
    def _one_subscriber(self) -> ReceiverConfig:
        if self.socket == "sub" and self.workers != 1:
            raise ValueError(
                "socket 'sub' needs workers = 1: every subscriber gets every message of a "
                "PUB stream, so several workers would store each frame several times"
            )
        return self

    @model_validator(mode="after")
    def _modules_fit(self) -> ReceiverConfig:
        if not self.modules:
            if self.full_shape is not None:
                raise ValueError("full_shape is for a multi-module detector: set modules too")
            return self
        placed = [module.placed for module in self.modules]
        if any(placed) and not all(placed):
            raise ValueError(
                "either every module is placed here (x, y) or none is (their headers then "
                "place them); modules without x and y: "
                + ", ".join(m.name for m in self.modules if not m.placed)
            )
        if self.full_shape is None and all(placed):
            raise ValueError(
                "modules need full_shape, the [rows, columns] of the full image (or leave x "
                "and y out of every module: their headers then place them)"
            )
        if self.protocol != "stins" or self.socket != "pull":
            raise ValueError("modules are read as STINS streams with pull sockets")
        if "connect" in self.model_fields_set:
            raise ValueError("with modules, each module names its stream: leave connect out")
        names = [module.name for module in self.modules]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"module name {name!r} is used twice")
            if name in DETECTOR_FIELDS:
                raise ValueError(f"module name {name!r} is used by the file itself; rename it")
        endpoints = [module.connect for module in self.modules]
        for endpoint in endpoints:
            if endpoints.count(endpoint) > 1:
                raise ValueError(f"two modules connect to {endpoint}; each has its own stream")
        for module in self.modules:
            if module.x is None or module.y is None or self.full_shape is None:
                continue
            if module.x >= self.full_shape[1] or module.y >= self.full_shape[0]:
                raise ValueError(
                    f"module {module.name!r} starts at x={module.x}, y={module.y}, outside "
                    f"full_shape {list(self.full_shape)}"
                )
        return self

    @property
    def endpoints(self) -> list[str]:
        """Every stream the receiver reads: the modules' or ``connect``."""
        return [module.connect for module in self.modules] or self.connect

    @model_validator(mode="after")
    def _data_root_exists(self) -> ReceiverConfig:
        if self.write and not self.data_root.is_dir():
            raise ValueError(
                f"data root {self.data_root} is not a directory; create it or pass --data-root"
            )
        return self


def load(
    path: Path | None = None, overrides: dict[str, Any] | None = None, entry: str | None = None
) -> ReceiverConfig:
    """Read a JSON or TOML file, or ``entry`` of a MAX IV YAML file (if given), apply
    ``overrides`` and validate the result."""
    data: dict[str, Any] = {}
    if path is not None and path.suffix in (".yaml", ".yml"):
        try:
            data = maxiv_config.read_entry(path, entry)
        except maxiv_config.MaxivConfigError as exc:
            raise ConfigError(f"MAX IV configuration: {exc}") from None
    elif path is not None:
        data = _read_file(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return ReceiverConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid receiver configuration: {problems}") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"configuration file {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a table/object of settings")
    return data
