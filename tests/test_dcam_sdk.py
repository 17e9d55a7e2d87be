"""The DCAM-API binding against the compiled fake SDK (no mocks).

Every call of dcam_subset.h goes through streamers.dcam_sdk.binding into
sim/dcam_fake/fake_dcam.c: the session and devices, strings, properties with
their ranges and refusals, subarrays, the buffer, captures in each trigger
mode, waits, the ring buffer, the packed pixel types and the fake's faults.
Times are only ever checked from below (a frame cannot come before it is
due), never from above, so a loaded machine cannot make a test fail. Images
are small subarrays, so that captures take milliseconds.
"""

from __future__ import annotations

import importlib.util
import linecache
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sim.dcam_fake import (
    CONFIG_VARIABLE,
    FAULTS_VARIABLE,
    ConfigFile,
    Model,
    expected_frame,
    library_path,
)
from streamers.dcam_sdk.binding import (
    LIBRARY_VARIABLE,
    CaptureStatus,
    DcamApi,
    DcamCamera,
    DcamError,
    ErrorCode,
    Frame,
    IdStr,
    LibraryNotFound,
    Mode,
    PixelType,
    Prop,
    PropertyRange,
    TransferInfo,
    TriggerActive,
    TriggerMode,
    TriggerSource,
    WaitEvent,
    default_library,
    error_hex,
    error_name,
    ffi,
    unpack_mono12,
    unpack_mono12p,
)

pytestmark = pytest.mark.timeout(30)
"""Each test takes well under a second; a fake that stops delivering must not hang the run."""

WAIT_S = 10.0
"""A timeout for events that do come; generous, since a test never waits it out."""
SLACK_S = 1e-4
"""Rounding between the fake's nanoseconds and time.monotonic()."""
BINNING = 0x00401110
"""DCAM_IDPROP_BINNING (research notes 3.6): a real property the fake does not have."""

SENSORS: dict[Model, tuple[str, int, int]] = {
    "ORCA-Flash4.0 V3": ("C13440-20CU", 2048, 2048),
    "ORCA-Fusion": ("C14440-20UP", 2304, 2304),
    "ORCA-Lightning": ("C14120-20P", 4608, 2592),
}
"""Model number and sensor width and height (research notes 3.10)."""


@pytest.fixture(scope="module")
def library() -> str:
    return library_path()


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (CONFIG_VARIABLE, FAULTS_VARIABLE, LIBRARY_VARIABLE):
        monkeypatch.delenv(variable, raising=False)


def configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, faults: str = "", **fields: Any
) -> None:
    """The camera the next dcamapi_init finds, and its faults."""
    path = ConfigFile(**fields).write(tmp_path / "camera.conf")
    monkeypatch.setenv(CONFIG_VARIABLE, str(path))
    if faults:
        monkeypatch.setenv(FAULTS_VARIABLE, faults)


@pytest.fixture
def api(library: str) -> Iterator[DcamApi]:
    with DcamApi(library) as session:
        yield session


@pytest.fixture
def camera(api: DcamApi) -> Iterator[DcamCamera]:
    with api.open(0) as opened:
        yield opened


def subarray(camera: DcamCamera, width: int, height: int, left: int = 0, top: int = 0) -> None:
    """Hamamatsu's order (research notes 3.7): mode off, the four values, mode on."""
    camera.set(Prop.SUBARRAYMODE, Mode.OFF)
    camera.set(Prop.SUBARRAYHPOS, left)
    camera.set(Prop.SUBARRAYHSIZE, width)
    camera.set(Prop.SUBARRAYVPOS, top)
    camera.set(Prop.SUBARRAYVSIZE, height)
    camera.set(Prop.SUBARRAYMODE, Mode.ON)


def shortest_exposure(camera: DcamCamera) -> float:
    minimum = camera.attr(Prop.EXPOSURETIME).minimum
    camera.set(Prop.EXPOSURETIME, minimum)
    return camera.get(Prop.EXPOSURETIME)


def refused(excinfo: pytest.ExceptionInfo[DcamError], call: str, code: ErrorCode) -> str:
    """The error's detail, after checking its call, code, name and message."""
    error = excinfo.value
    assert error.call == call
    assert error.code == code
    assert error.name == f"DCAMERR_{code.name}"
    head = f"{call}: DCAMERR_{code.name} (0x{code & 0xFFFFFFFF:08X})"
    assert str(error) == (f"{head}; {error.detail}" if error.detail else head)
    return error.detail


def wait_count(camera: DcamCamera, frames: int) -> float:
    """Wait until the capture has counted ``frames`` frames; the monotonic time then."""
    while camera.transfer_info().frame_count < frames:
        assert camera.wait_frame(WAIT_S), f"frame {frames - 1} did not come"
    return time.monotonic()


def copy(frame: Frame) -> Frame:
    return Frame(
        frame.index,
        frame.number,
        frame.width,
        frame.height,
        frame.rowbytes,
        frame.pixeltype,
        frame.timestamp,
        frame.pixels.copy(),
    )


def capture(camera: DcamCamera, frames: int) -> list[Frame]:
    """A SNAP of ``frames`` INTERNAL frames at the shortest exposure, copied out of the buffer."""
    shortest_exposure(camera)
    camera.alloc(frames)
    camera.start(sequence=False)
    assert camera.wait_event(WaitEvent.STOPPED, WAIT_S) == WaitEvent.STOPPED
    return [copy(camera.lock_frame(k)) for k in range(frames)]


def inside_wait(thread: threading.Thread) -> None:
    """Return once ``thread`` is at the dcamwait_start call of DcamCamera.wait_event.

    The GIL is given up there only inside the C call (or for the moment before it, which
    the short sleep after covers), so a close after this meets the thread waiting.
    """
    assert thread.ident is not None
    while True:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if frame.f_code.co_name == "wait_event" and "dcamwait_start(" in line:
                time.sleep(0.05)
                return
            frame = frame.f_back
        assert thread.is_alive()
        time.sleep(0.001)


def reference_pack(
    pixels: npt.NDArray[np.uint16], rowbytes: int, low_first: bool
) -> npt.NDArray[np.uint8]:
    """12-bit pixels (an even number per row) packed as research notes 3.9 lay them out."""
    p0 = pixels[:, 0::2].astype(np.uint32)
    p1 = pixels[:, 1::2].astype(np.uint32)
    if low_first:  # MONO12P: B0 = P0[7:0], B1 = P1[3:0] << 4 | P0[11:8], B2 = P1[11:4]
        triple = [p0 & 0xFF, ((p1 & 0xF) << 4) | (p0 >> 8), p1 >> 4]
    else:  # MONO12: B0 = P0[11:4], B1 = P1[3:0] << 4 | P0[3:0], B2 = P1[11:4]
        triple = [p0 >> 4, ((p1 & 0xF) << 4) | (p0 & 0xF), p1 >> 4]
    packed = np.stack(triple, axis=-1).reshape(pixels.shape[0], -1).astype(np.uint8)
    rows = np.zeros((pixels.shape[0], rowbytes), dtype=np.uint8)
    rows[:, : packed.shape[1]] = packed
    return rows


# ---- the header, the enums and the structures ------------------------------------------


def test_the_python_enums_are_the_headers(library: str) -> None:
    lib = ffi.dlopen(library)
    prefixes: list[tuple[str, type[Any]]] = [
        ("DCAMERR_", ErrorCode),
        ("DCAM_IDPROP_", Prop),
        ("DCAMPROP_TRIGGERSOURCE__", TriggerSource),
        ("DCAMPROP_TRIGGERACTIVE__", TriggerActive),
        ("DCAMPROP_TRIGGER_MODE__", TriggerMode),
        ("DCAMPROP_MODE__", Mode),
        ("DCAM_PIXELTYPE_", PixelType),
        ("DCAM_IDSTR_", IdStr),
        ("DCAMCAP_STATUS_", CaptureStatus),
        ("DCAMWAIT_CAPEVENT_", WaitEvent),
    ]
    for prefix, enum in prefixes:
        header = {
            name[len(prefix) :]: getattr(lib, name) for name in dir(lib) if name.startswith(prefix)
        }
        assert header == {member.name: member.value for member in enum}, prefix


def test_failure_codes_are_the_documented_hex_values(library: str) -> None:
    lib = ffi.dlopen(library)
    documented = {
        "DCAMERR_BUSY": 0x80000101,
        "DCAMERR_ABORT": 0x80000102,
        "DCAMERR_NOTREADY": 0x80000103,
        "DCAMERR_TIMEOUT": 0x80000106,
        "DCAMERR_NOCAMERA": 0x80000206,
        "DCAMERR_LOSTFRAME": 0x80000301,
        "DCAMERR_INVALIDPARAM": 0x80000808,
        "DCAMERR_INVALIDVALUE": 0x80000821,
        "DCAMERR_OUTOFRANGE": 0x80000822,
        "DCAMERR_NOTWRITABLE": 0x80000823,
        "DCAMERR_INVALIDSUBARRAY": 0x8000082B,
        "DCAMERR_NOTSUPPORT": 0x80000F03,
        "DCAMERR_INVALIDWAITHANDLE": 0x84002001,
    }
    for name, value in documented.items():
        assert getattr(lib, name) < 0, f"{name} must come back negative (int32)"
        assert getattr(lib, name) & 0xFFFFFFFF == value, name
    assert lib.DCAMERR_SUCCESS == 1
    assert lib.DCAMWAIT_TIMEOUT_INFINITE & 0xFFFFFFFF == 0x80000000
    assert lib.DCAMPROP_ATTR_HASRANGE & 0xFFFFFFFF == 0x80000000
    assert (lib.DCAMCAP_START_SEQUENCE, lib.DCAMCAP_START_SNAP) == (-1, 0)


@pytest.mark.parametrize(
    ("struct", "size", "offsets"),
    [
        ("DCAM_GUID", 16, {}),
        ("DCAMAPI_INIT", 32, {"initoption": 16, "guid": 24}),
        ("DCAMDEV_OPEN", 16, {"hdcam": 8}),
        ("DCAMDEV_STRING", 24, {"text": 8, "textbytes": 16}),
        ("DCAMWAIT_OPEN", 24, {"hwait": 8, "hdcam": 16}),
        ("DCAMWAIT_START", 16, {"timeout": 12}),
        ("DCAM_TIMESTAMP", 8, {"microsec": 4}),
        ("DCAMCAP_TRANSFERINFO", 16, {"nFrameCount": 12}),
        (
            "DCAMBUF_FRAME",
            64,
            {
                "iFrame": 12,
                "buf": 16,
                "rowbytes": 24,
                "type": 28,
                "width": 32,
                "height": 36,
                "left": 40,
                "top": 44,
                "timestamp": 48,
                "framestamp": 56,
                "camerastamp": 60,
            },
        ),
        (
            "DCAMPROP_ATTR",
            88,
            {
                "attribute": 16,
                "iUnit": 24,
                "valuemin": 32,
                "valuemax": 40,
                "valuestep": 48,
                "valuedefault": 56,
                "iPropStep_Element": 84,
            },
        ),
    ],
)
def test_structures_have_the_sdk_layout(struct: str, size: int, offsets: dict[str, int]) -> None:
    assert ffi.sizeof(struct) == size
    for member, offset in offsets.items():
        assert ffi.offsetof(struct, member) == offset, member


def test_error_names_and_hex() -> None:
    assert error_name(ErrorCode.OUTOFRANGE) == "DCAMERR_OUTOFRANGE"
    assert error_hex(ErrorCode.OUTOFRANGE) == "0x80000822"
    assert error_name(-0x7FFF0000) == "unknown DCAMERR"
    error = DcamError("dcamcap_start(SEQUENCE)", -0x7FFF0000)
    assert str(error) == "dcamcap_start(SEQUENCE): unknown DCAMERR (0x80010000)"
    assert error.code == -0x7FFF0000
    assert error.hex == "0x80010000"
    assert isinstance(error, RuntimeError)


# ---- session, devices and strings --------------------------------------------------------


def test_init_finds_one_device_and_one_session_at_a_time(library: str) -> None:
    with DcamApi(library) as api:
        assert api.device_count == 1
        with pytest.raises(DcamError) as excinfo:
            DcamApi(library)
        refused(excinfo, "dcamapi_init", ErrorCode.EXCLUDED)
    with DcamApi(library) as again:
        assert again.device_count == 1
    again.uninit()


def test_open_close_and_refusals(api: DcamApi) -> None:
    with pytest.raises(DcamError) as excinfo:
        api.open(1)
    refused(excinfo, "dcamdev_open(1)", ErrorCode.INVALIDCAMERA)
    camera = api.open(0)
    with pytest.raises(DcamError) as excinfo:
        api.open(0)
    refused(excinfo, "dcamdev_open(0)", ErrorCode.EXCLUDED)
    assert camera.supported_events == WaitEvent.FRAMEREADY | WaitEvent.CYCLEEND | WaitEvent.STOPPED
    camera.close()
    camera.close()
    with pytest.raises(DcamError) as excinfo:
        camera.get(Prop.EXPOSURETIME)
    assert refused(excinfo, "dcamprop_getvalue(EXPOSURETIME)", ErrorCode.INVALIDHANDLE) == (
        "the camera was closed"
    )
    with api.open(0) as reopened:
        assert reopened.get(Prop.IMAGE_WIDTH) == 2048


def test_uninit_closes_the_sessions_cameras(library: str) -> None:
    api = DcamApi(library)
    camera = api.open(0)
    api.uninit()
    api.uninit()
    with pytest.raises(DcamError, match="the camera was closed"):
        camera.status()
    with pytest.raises(DcamError) as excinfo:
        api.open(0)
    refused(excinfo, "dcamdev_open(0)", ErrorCode.NOTREADY)
    with DcamApi(library) as fresh, fresh.open(0) as opened:
        assert opened.status() == CaptureStatus.STABLE


@pytest.mark.parametrize("model", list(SENSORS))
def test_strings_and_sensor_of_each_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str, model: Model
) -> None:
    number, width, height = SENSORS[model]
    configure(monkeypatch, tmp_path, model=model, camera_id="S/N: 301234")
    with DcamApi(library) as api:
        assert api.device_string(0, IdStr.MODEL) == number
        with pytest.raises(DcamError) as excinfo:
            api.device_string(1, IdStr.MODEL)
        refused(excinfo, "dcamdev_getstring(device 1, MODEL)", ErrorCode.INVALIDCAMERA)
        with api.open(0) as camera:
            assert camera.string(IdStr.MODEL) == number
            assert camera.string(IdStr.CAMERA_SERIESNAME) == model
            assert camera.string(IdStr.CAMERAID) == "S/N: 301234"
            assert "simulator for tests" in camera.string(IdStr.VENDOR)
            for idstr in IdStr:
                assert camera.string(idstr)
            assert camera.get(Prop.IMAGEDETECTOR_PIXELNUMHORZ) == width
            assert camera.get(Prop.IMAGEDETECTOR_PIXELNUMVERT) == height
            assert (camera.get(Prop.IMAGE_WIDTH), camera.get(Prop.IMAGE_HEIGHT)) == (width, height)
            assert camera.get(Prop.IMAGE_PIXELTYPE) == PixelType.MONO16
            assert camera.get(Prop.IMAGE_ROWBYTES) == 2 * width
            assert camera.get(Prop.IMAGE_FRAMEBYTES) == 2 * width * height


def test_strings_of_error_codes_and_unknown_ids(camera: DcamCamera) -> None:
    assert camera.string(ErrorCode.TIMEOUT) == "DCAMERR_TIMEOUT"
    with pytest.raises(DcamError) as excinfo:
        camera.string(0x04000113)
    refused(excinfo, "dcamdev_getstring(0x04000113)", ErrorCode.NOTSUPPORT)


# ---- properties ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "exposure"),
    [
        ("ORCA-Flash4.0 V3", (0.001003669, 10.0, 0.00999771)),
        ("ORCA-Fusion", (0.000017632, 10.000004662, 0.042947206)),
        ("ORCA-Lightning", (0.000012608, 1.00000352, 0.0081952)),
    ],
)
def test_exposure_range_default_and_rounding(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    library: str,
    model: Model,
    exposure: tuple[float, float, float],
) -> None:
    minimum, maximum, default = exposure
    configure(monkeypatch, tmp_path, model=model)
    with DcamApi(library) as api, api.open(0) as camera:
        assert camera.attr(Prop.EXPOSURETIME) == PropertyRange(minimum, maximum, 1e-8)
        assert camera.get(Prop.EXPOSURETIME) == default
        assert camera.set_get(Prop.EXPOSURETIME, 0.0123456789) == 0.01234568
        camera.set(Prop.EXPOSURETIME, maximum)
        assert camera.get(Prop.EXPOSURETIME) == pytest.approx(maximum, abs=1e-8)
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.EXPOSURETIME, 40)
        detail = refused(excinfo, "dcamprop_setvalue(EXPOSURETIME=40)", ErrorCode.OUTOFRANGE)
        assert detail == f"EXPOSURETIME takes {minimum:.10g} to {maximum:.10g} in steps of 1e-08"
        with pytest.raises(DcamError) as excinfo:
            camera.set_get(Prop.EXPOSURETIME, minimum / 2)
        refused(
            excinfo, f"dcamprop_setgetvalue(EXPOSURETIME={minimum / 2:.10g})", ErrorCode.OUTOFRANGE
        )


def test_getattr_succeeds_with_a_value_other_than_success(library: str, camera: DcamCamera) -> None:
    """Research notes 3.1: success is any value of 0 or more; the fake returns sizeof(ATTR)."""
    lib = ffi.dlopen(library)
    param = ffi.new("DCAMPROP_ATTR *")
    param.cbSize = ffi.sizeof("DCAMPROP_ATTR")
    param.iProp = Prop.EXPOSURETIME
    assert lib.dcamprop_getattr(camera._device("test"), param) == 88
    assert param.attribute & lib.DCAMPROP_TYPE_MASK == lib.DCAMPROP_TYPE_REAL
    for flag in ("READABLE", "WRITABLE", "ACCESSREADY", "ACCESSBUSY", "HASRANGE", "AUTOROUNDING"):
        assert param.attribute & getattr(lib, f"DCAMPROP_ATTR_{flag}"), flag
    assert param.iUnit == lib.DCAMPROP_UNIT_SECOND
    param.iProp = Prop.IMAGE_WIDTH
    assert lib.dcamprop_getattr(camera._device("test"), param) > 0
    assert not param.attribute & lib.DCAMPROP_ATTR_WRITABLE
    assert not param.attribute & lib.DCAMPROP_ATTR_HASRANGE


@pytest.mark.parametrize(
    "prop",
    [
        Prop.IMAGE_WIDTH,
        Prop.IMAGE_ROWBYTES,
        Prop.TIMING_READOUTTIME,
        Prop.INTERNALFRAMERATE,
        Prop.INTERNAL_FRAMEINTERVAL,
        Prop.TRANSFERINFO_LOSTCOUNT,
        Prop.IMAGEDETECTOR_PIXELNUMHORZ,
    ],
)
def test_read_only_properties_are_not_writable(camera: DcamCamera, prop: Prop) -> None:
    value = camera.get(prop)
    with pytest.raises(DcamError) as excinfo:
        camera.set(prop, value)
    call = f"dcamprop_setvalue({prop.name}={value:.10g})"
    assert refused(excinfo, call, ErrorCode.NOTWRITABLE) == "", "no range for a read-only one"


def test_a_property_the_camera_lacks(camera: DcamCamera) -> None:
    actions: list[tuple[Callable[[], object], str]] = [
        (lambda: camera.get(BINNING), "dcamprop_getvalue(0x00401110)"),
        (lambda: camera.set(BINNING, 2), "dcamprop_setvalue(0x00401110=2)"),
        (lambda: camera.attr(BINNING), "dcamprop_getattr(0x00401110)"),
    ]
    for action, call in actions:
        with pytest.raises(DcamError) as excinfo:
            action()
        refused(excinfo, call, ErrorCode.NOTSUPPORT)


def test_mode_properties_take_their_values_only(camera: DcamCamera) -> None:
    for source in (TriggerSource.EXTERNAL, TriggerSource.SOFTWARE, TriggerSource.INTERNAL):
        camera.set(Prop.TRIGGERSOURCE, source)
        assert camera.get(Prop.TRIGGERSOURCE) == source
    for active in TriggerActive:
        assert camera.set_get(Prop.TRIGGERACTIVE, active) == active
    for mode in TriggerMode:
        assert camera.set_get(Prop.TRIGGER_MODE, mode) == mode
    assert camera.attr(Prop.TRIGGER_MODE) == PropertyRange(1, 6, 0)
    cases = [
        (Prop.TRIGGERSOURCE, 0, ErrorCode.OUTOFRANGE),
        (Prop.TRIGGERSOURCE, TriggerSource.MASTERPULSE, ErrorCode.OUTOFRANGE),
        (Prop.TRIGGERSOURCE, 2.5, ErrorCode.INVALIDPARAM),
        (Prop.TRIGGER_MODE, 3, ErrorCode.INVALIDPARAM),
        (Prop.TRIGGERACTIVE, 4, ErrorCode.OUTOFRANGE),
        (Prop.SUBARRAYMODE, 3, ErrorCode.OUTOFRANGE),
        (Prop.EXPOSURETIME, float("nan"), ErrorCode.INVALIDPARAM),
    ]
    for prop, value, code in cases:
        with pytest.raises(DcamError) as excinfo:
            camera.set(prop, value)
        assert excinfo.value.code == code, (prop, value)
        assert excinfo.value.call == f"dcamprop_setvalue({prop.name}={value:.10g})"
    assert camera.get(Prop.TRIGGER_MODE) == TriggerMode.START, "a refused value changes nothing"


def test_subarray_steps_and_fit_on_the_flash(camera: DcamCamera) -> None:
    assert camera.attr(Prop.SUBARRAYHPOS) == PropertyRange(0, 2044, 4)
    assert camera.attr(Prop.SUBARRAYVSIZE) == PropertyRange(4, 2048, 4)
    with pytest.raises(DcamError) as excinfo:
        camera.set(Prop.SUBARRAYHPOS, 2)
    detail = refused(excinfo, "dcamprop_setvalue(SUBARRAYHPOS=2)", ErrorCode.INVALIDPARAM)
    assert detail == "SUBARRAYHPOS takes 0 to 2044 in steps of 4"
    with pytest.raises(DcamError) as excinfo:
        camera.set(Prop.SUBARRAYVSIZE, 0)
    refused(excinfo, "dcamprop_setvalue(SUBARRAYVSIZE=0)", ErrorCode.OUTOFRANGE)
    camera.set(Prop.SUBARRAYHPOS, 1024)
    assert camera.get(Prop.IMAGE_WIDTH) == 2048, "with the subarray off, the whole sensor"
    with pytest.raises(DcamError) as excinfo:
        camera.set(Prop.SUBARRAYMODE, Mode.ON)
    refused(excinfo, "dcamprop_setvalue(SUBARRAYMODE=2)", ErrorCode.INVALIDSUBARRAY)
    subarray(camera, 132, 40, left=8, top=12)
    assert (camera.get(Prop.IMAGE_WIDTH), camera.get(Prop.IMAGE_HEIGHT)) == (132, 40)
    assert camera.get(Prop.IMAGE_ROWBYTES) == 264
    with pytest.raises(DcamError) as excinfo:
        camera.set(Prop.SUBARRAYVPOS, 2012)
    refused(excinfo, "dcamprop_setvalue(SUBARRAYVPOS=2012)", ErrorCode.INVALIDSUBARRAY)
    assert camera.get(Prop.SUBARRAYVPOS) == 12


def test_subarray_steps_on_the_lightning_are_128_columns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, model="ORCA-Lightning")
    with DcamApi(library) as api, api.open(0) as camera:
        assert camera.attr(Prop.SUBARRAYHPOS) == PropertyRange(0, 4480, 128)
        assert camera.attr(Prop.SUBARRAYHSIZE) == PropertyRange(128, 4608, 128)
        assert camera.attr(Prop.SUBARRAYVPOS) == PropertyRange(0, 2588, 4)
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.SUBARRAYHSIZE, 200)
        detail = refused(excinfo, "dcamprop_setvalue(SUBARRAYHSIZE=200)", ErrorCode.INVALIDPARAM)
        assert detail == "SUBARRAYHSIZE takes 128 to 4608 in steps of 128"
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.SUBARRAYHSIZE, 64)
        refused(excinfo, "dcamprop_setvalue(SUBARRAYHSIZE=64)", ErrorCode.OUTOFRANGE)
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.SUBARRAYHPOS, 100)
        refused(excinfo, "dcamprop_setvalue(SUBARRAYHPOS=100)", ErrorCode.INVALIDPARAM)
        subarray(camera, 256, 8, left=4352)
        assert camera.get(Prop.IMAGE_WIDTH) == 256
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.SUBARRAYHPOS, 4480)
        refused(excinfo, "dcamprop_setvalue(SUBARRAYHPOS=4480)", ErrorCode.INVALIDSUBARRAY)


def test_pixel_types_bits_and_row_bytes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 132, 4)
        assert camera.attr(Prop.IMAGE_PIXELTYPE) == PropertyRange(1, 3, 0)
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO12P)
        refused(excinfo, "dcamprop_setvalue(IMAGE_PIXELTYPE=5)", ErrorCode.OUTOFRANGE)
        camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO12)
        assert camera.get(Prop.BITSPERCHANNEL) == 12
        assert camera.get(Prop.IMAGE_ROWBYTES) == 200, "198 bytes, padded to a multiple of 8"
        assert camera.get(Prop.IMAGE_FRAMEBYTES) == 800
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.BITSPERCHANNEL, 16)
        refused(excinfo, "dcamprop_setvalue(BITSPERCHANNEL=16)", ErrorCode.OUTOFRANGE)
        camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO8)
        assert (camera.get(Prop.BITSPERCHANNEL), camera.get(Prop.IMAGE_ROWBYTES)) == (8, 136)
        camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO16)
        assert camera.get(Prop.BITSPERCHANNEL) == 16
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.BITSPERCHANNEL, 14)
        refused(excinfo, "dcamprop_setvalue(BITSPERCHANNEL=14)", ErrorCode.INVALIDPARAM)
        camera.set(Prop.BITSPERCHANNEL, 12)
    configure(monkeypatch, tmp_path, model="ORCA-Lightning")
    with DcamApi(library) as api, api.open(0) as camera:
        assert camera.get(Prop.BITSPERCHANNEL) == 12
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.BITSPERCHANNEL, 16)
        refused(excinfo, "dcamprop_setvalue(BITSPERCHANNEL=16)", ErrorCode.NOTWRITABLE)
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO8)
        refused(excinfo, "dcamprop_setvalue(IMAGE_PIXELTYPE=1)", ErrorCode.OUTOFRANGE)
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO12)
        refused(excinfo, "dcamprop_setvalue(IMAGE_PIXELTYPE=3)", ErrorCode.INVALIDPARAM)
        camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO12P)
        assert camera.get(Prop.IMAGE_ROWBYTES) == 4608 * 3 // 2


def test_frame_interval_follows_subarray_height_and_exposure(camera: DcamCamera) -> None:
    exposure = shortest_exposure(camera)
    readouts, intervals = [], []
    for height in (2048, 1024, 256, 16):
        subarray(camera, 2048, height)
        readouts.append(camera.get(Prop.TIMING_READOUTTIME))
        intervals.append(camera.get(Prop.INTERNAL_FRAMEINTERVAL))
        assert camera.get(Prop.INTERNALFRAMERATE) == pytest.approx(1 / intervals[-1])
    assert readouts == sorted(readouts, reverse=True)
    assert len(set(readouts)) == 4, "fewer rows read out take less time"
    assert readouts[1] == pytest.approx(readouts[0] / 2), "readout is rows x the row time"
    assert intervals == sorted(intervals, reverse=True)
    for readout, interval in zip(readouts, intervals, strict=True):
        assert interval >= readout
        assert interval >= exposure
    assert intervals[0] > intervals[-1]
    camera.set(Prop.EXPOSURETIME, 0.05)
    assert camera.get(Prop.INTERNAL_FRAMEINTERVAL) >= 0.05, "a long exposure sets the pace"
    assert camera.get(Prop.TIMING_READOUTTIME) == readouts[-1]


# ---- states, buffer and capture ------------------------------------------------------------


def test_states_buffer_and_their_refusals(camera: DcamCamera) -> None:
    subarray(camera, 64, 8)
    assert camera.status() == CaptureStatus.STABLE
    with pytest.raises(DcamError) as excinfo:
        camera.start()
    refused(excinfo, "dcamcap_start(SEQUENCE)", ErrorCode.NOTREADY)
    with pytest.raises(DcamError) as excinfo:
        camera.lock_frame(0)
    refused(excinfo, "dcambuf_lockframe(0)", ErrorCode.NOTREADY)
    with pytest.raises(DcamError) as excinfo:
        camera.alloc(0)
    refused(excinfo, "dcambuf_alloc(0)", ErrorCode.INVALIDPARAM)
    camera.alloc(3)
    assert camera.status() == CaptureStatus.READY
    assert camera.transfer_info() == TransferInfo(-1, 0)
    with pytest.raises(DcamError) as excinfo:
        camera.lock_frame(-1)
    refused(excinfo, "dcambuf_lockframe(-1)", ErrorCode.BUSY)
    with pytest.raises(DcamError) as excinfo:
        camera.lock_frame(3)
    refused(excinfo, "dcambuf_lockframe(3)", ErrorCode.INVALIDFRAMEINDEX)
    with pytest.raises(DcamError) as excinfo:
        camera.set(Prop.SUBARRAYHSIZE, 128)
    refused(excinfo, "dcamprop_setvalue(SUBARRAYHSIZE=128)", ErrorCode.NOTSTABLE)
    camera.set(Prop.TRIGGERACTIVE, TriggerActive.EDGE)
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
    camera.start()
    assert camera.status() == CaptureStatus.BUSY
    actions: list[tuple[Callable[[], object], str]] = [
        (camera.start, "dcamcap_start(SEQUENCE)"),
        (lambda: camera.alloc(2), "dcambuf_alloc(2)"),
        (camera.release, "dcambuf_release"),
        (lambda: camera.set(Prop.SUBARRAYHSIZE, 128), "dcamprop_setvalue(SUBARRAYHSIZE=128)"),
        (lambda: camera.set(Prop.TRIGGERACTIVE, 2), "dcamprop_setvalue(TRIGGERACTIVE=2)"),
        (lambda: camera.set(Prop.IMAGE_PIXELTYPE, 1), "dcamprop_setvalue(IMAGE_PIXELTYPE=1)"),
    ]
    for action, call in actions:
        with pytest.raises(DcamError) as excinfo:
            action()
        assert refused(excinfo, call, ErrorCode.BUSY) == ""
    camera.set(Prop.TRIGGER_MODE, TriggerMode.NORMAL)
    camera.set(Prop.EXPOSURETIME, 0.002)
    camera.stop()
    camera.stop()
    assert camera.status() == CaptureStatus.READY
    camera.release()
    assert camera.status() == CaptureStatus.STABLE
    camera.set(Prop.SUBARRAYHSIZE, 128)


def test_trigger_mode_is_writable_while_capturing_only_on_the_flash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, model="ORCA-Fusion")
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 64, 8)
        camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
        camera.alloc(1)
        camera.start()
        with pytest.raises(DcamError) as excinfo:
            camera.set(Prop.TRIGGER_MODE, TriggerMode.START)
        refused(excinfo, "dcamprop_setvalue(TRIGGER_MODE=6)", ErrorCode.BUSY)


@pytest.mark.parametrize(("left", "top", "bits"), [(0, 0, 16), (8, 100, 16), (1920, 2000, 12)])
def test_internal_sequence_mono16_content(
    camera: DcamCamera, left: int, top: int, bits: int
) -> None:
    camera.set(Prop.BITSPERCHANNEL, bits)
    subarray(camera, 128, 16, left=left, top=top)
    frames = capture(camera, 6)
    for k, frame in enumerate(frames):
        assert (frame.index, frame.number) == (k, k)
        assert (frame.width, frame.height, frame.rowbytes) == (128, 16, 256)
        assert frame.pixeltype == PixelType.MONO16
        assert frame.pixels.dtype == np.uint16
        expected = expected_frame(k, 16, 128, PixelType.MONO16, top=top, left=left, bits=bits)
        np.testing.assert_array_equal(frame.pixels, expected)
    stamps = [frame.timestamp for frame in frames]
    assert stamps == sorted(stamps)
    assert stamps[0] > 1.5e9, "seconds since the epoch"


def test_internal_frames_come_no_earlier_than_due(camera: DcamCamera) -> None:
    subarray(camera, 64, 512)
    camera.set(Prop.EXPOSURETIME, 0.002)
    exposure = camera.get(Prop.EXPOSURETIME)
    readout = camera.get(Prop.TIMING_READOUTTIME)
    interval = camera.get(Prop.INTERNAL_FRAMEINTERVAL)
    camera.alloc(10)
    begun = time.monotonic()
    camera.start()
    for k in range(8):
        arrived = wait_count(camera, k + 1)
        assert arrived - begun >= k * interval + exposure + readout - SLACK_S, f"frame {k} early"
        newest = camera.lock_frame(-1)
        assert newest.number >= k
        assert newest.index == newest.number % 10
        assert not newest.pixels.flags.writeable
        expected = expected_frame(newest.number, 512, 64, PixelType.MONO16)
        np.testing.assert_array_equal(newest.pixels, expected)


def test_mono12p_frames_of_the_lightning_are_packed_low_bits_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, model="ORCA-Lightning")
    with DcamApi(library) as api, api.open(0) as camera:
        camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO12P)
        subarray(camera, 384, 12, left=3840, top=40)
        rowbytes = int(camera.get(Prop.IMAGE_ROWBYTES))
        assert rowbytes == 576
        for k, frame in enumerate(capture(camera, 5)):
            assert frame.pixeltype == PixelType.MONO12P
            assert frame.pixels.shape == (12, rowbytes)
            expected = expected_frame(k, 12, 384, PixelType.MONO12P, top=40, left=3840)
            assert expected.max() == 0xFFF, "12-bit values wrap within the image"
            np.testing.assert_array_equal(
                frame.pixels, reference_pack(expected.astype(np.uint16), rowbytes, low_first=True)
            )
            np.testing.assert_array_equal(unpack_mono12p(frame.pixels, 12, 384, rowbytes), expected)
            np.testing.assert_array_equal(frame.image(), expected)


def test_mono16_frames_of_the_lightning_have_12_bits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, model="ORCA-Lightning")
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 128, 8, top=1000)
        (frame,) = capture(camera, 1)
        expected = expected_frame(0, 8, 128, PixelType.MONO16, top=1000, bits=12)
        np.testing.assert_array_equal(frame.pixels, expected)
        np.testing.assert_array_equal(frame.image(), expected)


def test_mono12_and_mono8_frames_of_the_flash(camera: DcamCamera) -> None:
    camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO12)
    subarray(camera, 1364, 8, left=680, top=4)
    rowbytes = int(camera.get(Prop.IMAGE_ROWBYTES))
    assert rowbytes == 2048, "2046 bytes of pixels, padded"
    for k, frame in enumerate(capture(camera, 3)):
        expected = expected_frame(k, 8, 1364, PixelType.MONO12, top=4, left=680)
        np.testing.assert_array_equal(
            frame.pixels, reference_pack(expected.astype(np.uint16), rowbytes, low_first=False)
        )
        np.testing.assert_array_equal(unpack_mono12(frame.pixels, 8, 1364, rowbytes), expected)
        np.testing.assert_array_equal(frame.image(), expected)
    camera.release()
    camera.set(Prop.IMAGE_PIXELTYPE, PixelType.MONO8)
    subarray(camera, 260, 4, left=4)
    (frame,) = capture(camera, 1)
    assert frame.rowbytes == 264
    assert frame.pixels.dtype == np.uint8
    np.testing.assert_array_equal(frame.pixels, expected_frame(0, 4, 260, PixelType.MONO8, left=4))


def test_snap_stops_when_the_buffer_is_full(camera: DcamCamera) -> None:
    subarray(camera, 64, 8)
    shortest_exposure(camera)
    camera.alloc(4)
    camera.start(sequence=False)
    assert camera.wait_event(WaitEvent.STOPPED, WAIT_S) == WaitEvent.STOPPED
    assert camera.status() == CaptureStatus.READY
    assert camera.transfer_info() == TransferInfo(3, 4)
    assert camera.wait_event(WaitEvent.CYCLEEND, WAIT_S) == WaitEvent.CYCLEEND
    assert camera.wait_event(WaitEvent.FRAMEREADY, 0.0) == WaitEvent.FRAMEREADY
    assert camera.wait_event(WaitEvent.FRAMEREADY | WaitEvent.STOPPED, 0.02) is None
    assert [camera.lock_frame(k).number for k in range(4)] == [0, 1, 2, 3]
    camera.start(sequence=False)
    assert camera.wait_event(WaitEvent.STOPPED, WAIT_S) == WaitEvent.STOPPED
    assert camera.transfer_info() == TransferInfo(3, 4)


def test_the_ring_wraps_and_overwrites_earlier_frames(camera: DcamCamera) -> None:
    """Software triggers make the count exact: frame k goes to buffer index k % 3."""
    subarray(camera, 64, 8)
    shortest_exposure(camera)
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
    camera.alloc(3)
    camera.start()
    camera.fire_trigger()
    wait_count(camera, 1)
    first = camera.lock_frame(0)
    assert first.number == 0
    np.testing.assert_array_equal(first.pixels, expected_frame(0, 8, 64, PixelType.MONO16))
    for _ in range(7):
        camera.fire_trigger()
    wait_count(camera, 8)
    assert camera.transfer_info() == TransferInfo(1, 8)
    assert camera.get(Prop.TRANSFERINFO_FRAMECOUNT) == 8
    for index, number in enumerate((6, 7, 5)):
        frame = camera.lock_frame(index)
        assert (frame.index, frame.number) == (index, number)
        np.testing.assert_array_equal(frame.pixels, expected_frame(number, 8, 64, PixelType.MONO16))
    assert camera.lock_frame(-1).number == 7
    np.testing.assert_array_equal(
        first.pixels, expected_frame(6, 8, 64, PixelType.MONO16), "the view sees frame 6 now"
    )


def test_exposure_changes_while_capturing(camera: DcamCamera) -> None:
    subarray(camera, 64, 8)
    shortest_exposure(camera)
    camera.alloc(4)
    camera.start()
    wait_count(camera, 2)
    changed = time.monotonic()
    assert camera.set_get(Prop.EXPOSURETIME, 0.003) == 0.003
    count = camera.transfer_info().frame_count
    arrived = wait_count(camera, count + 2)
    readout = camera.get(Prop.TIMING_READOUTTIME)
    assert arrived - changed >= 0.003 + 0.003 + readout - SLACK_S, "the new exposure sets the pace"
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
    while camera.wait_frame(0.0):
        pass
    count = camera.transfer_info().frame_count
    assert not camera.wait_frame(0.05), "no software trigger, no frame"
    camera.fire_trigger()
    wait_count(camera, count + 1)
    assert camera.lock_frame(-1).number == count


def test_software_trigger_takes_one_frame_per_trigger(camera: DcamCamera) -> None:
    subarray(camera, 64, 8)
    exposure = shortest_exposure(camera)
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
    camera.alloc(8)
    with pytest.raises(DcamError) as excinfo:
        camera.fire_trigger()
    refused(excinfo, "dcamcap_firetrigger", ErrorCode.NOTBUSY)
    camera.start()
    begun = time.monotonic()
    assert not camera.wait_frame(0.05)
    assert time.monotonic() - begun >= 0.05 - 1e-3, "a wait without a frame waits its timeout"
    assert camera.transfer_info() == TransferInfo(-1, 0)
    fired = time.monotonic()
    camera.fire_trigger()
    assert camera.wait_frame(WAIT_S)
    assert time.monotonic() - fired >= exposure - SLACK_S
    assert camera.transfer_info() == TransferInfo(0, 1)
    assert not camera.wait_frame(0.03), "one trigger, one frame"
    for _ in range(3):
        camera.fire_trigger()
    wait_count(camera, 4)
    assert not camera.wait_frame(0.03)
    assert camera.transfer_info() == TransferInfo(3, 4)
    assert [camera.lock_frame(k).number for k in range(4)] == [0, 1, 2, 3]
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.INTERNAL)
    with pytest.raises(DcamError) as excinfo:
        camera.fire_trigger()
    refused(excinfo, "dcamcap_firetrigger", ErrorCode.NOTSUPPORT)


@pytest.mark.parametrize(
    ("active", "mode", "exposure_s", "first_due_s", "next_s"),
    [
        # EDGE: a frame per pulse (every 4 ms here) once the camera is ready for one.
        (TriggerActive.EDGE, TriggerMode.NORMAL, 0.0011, 0.0011, 0.004),
        # EDGE with an exposure longer than the period: every second pulse.
        (TriggerActive.EDGE, TriggerMode.NORMAL, 0.0055, 0.0055, 0.008),
        # LEVEL: the exposure is the pulse width (3 ms).
        (TriggerActive.LEVEL, TriggerMode.NORMAL, 0.0011, 0.003, 0.004),
        # SYNCREADOUT: each pulse ends an exposure, so the first frame needs two.
        (TriggerActive.SYNCREADOUT, TriggerMode.NORMAL, 0.0011, 0.004, 0.004),
        # START: the first pulse starts internal timing.
        (TriggerActive.EDGE, TriggerMode.START, 0.002, 0.002, 0.002),
    ],
)
def test_external_trigger_from_the_pulse_generator(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    library: str,
    active: TriggerActive,
    mode: TriggerMode,
    exposure_s: float,
    first_due_s: float,
    next_s: float,
) -> None:
    delay = 0.02
    configure(
        monkeypatch,
        tmp_path,
        trigger_period_ms=4.0,
        trigger_delay_ms=1e3 * delay,
        trigger_width_ms=3.0,
    )
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 64, 8)
        camera.set(Prop.EXPOSURETIME, exposure_s)
        camera.set(Prop.TRIGGERSOURCE, TriggerSource.EXTERNAL)
        camera.set(Prop.TRIGGERACTIVE, active)
        camera.set(Prop.TRIGGER_MODE, mode)
        readout = camera.get(Prop.TIMING_READOUTTIME)
        camera.alloc(5)
        begun = time.monotonic()
        camera.start(sequence=False)
        for k in range(5):
            arrived = wait_count(camera, k + 1)
            due = delay + first_due_s + readout + k * next_s
            assert arrived - begun >= due - SLACK_S, f"frame {k} before its pulse"
        assert camera.status() == CaptureStatus.READY
        assert [camera.lock_frame(k).number for k in range(5)] == [0, 1, 2, 3, 4]


# ---- waits ----------------------------------------------------------------------------


def test_abort_ends_a_wait_from_another_thread(camera: DcamCamera) -> None:
    """The waiting thread is in C; this thread must run meanwhile (cffi releases the GIL)."""
    subarray(camera, 64, 8)
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
    camera.alloc(2)
    camera.start()
    outcome: list[object] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        try:
            outcome.append(camera.wait_frame(float("inf")))
        except DcamError as error:
            outcome.append(error)

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    while thread.is_alive():  # an abort before the wait began does nothing: abort again
        camera.abort_wait()
        thread.join(0.05)
    (error,) = outcome
    assert isinstance(error, DcamError)
    assert error.code == ErrorCode.ABORT
    assert str(error) == "dcamwait_start(FRAMEREADY): DCAMERR_ABORT (0x80000102)"
    camera.abort_wait()
    assert not camera.wait_frame(0.02), "an abort with nobody waiting does nothing"
    with pytest.raises(ValueError, match="must be a time of 0 or more"):
        camera.wait_frame(-1.0)


def test_closing_the_camera_ends_its_waits(api: DcamApi) -> None:
    camera = api.open(0)
    outcome: list[object] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        try:
            outcome.append(camera.wait_event(WaitEvent.STOPPED, float("inf")))
        except DcamError as error:
            outcome.append(error.code)

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    inside_wait(thread)
    camera.close()
    thread.join(WAIT_S)
    assert outcome == [ErrorCode.ABORT]


def test_stop_wakes_a_stopped_waiter(camera: DcamCamera) -> None:
    subarray(camera, 64, 8)
    camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
    camera.alloc(2)
    camera.start()
    outcome: list[WaitEvent | None] = []
    thread = threading.Thread(
        target=lambda: outcome.append(camera.wait_event(WaitEvent.STOPPED, WAIT_S))
    )
    thread.start()
    time.sleep(0.02)
    camera.stop()
    thread.join(WAIT_S)
    assert outcome == [WaitEvent.STOPPED]


# ---- faults --------------------------------------------------------------------------


def test_a_dropped_frame_is_counted_but_never_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, faults="drop_frame=2,7")
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 64, 8)
        shortest_exposure(camera)
        camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
        camera.alloc(5)
        camera.start()
        for _ in range(4):
            camera.fire_trigger()
        wait_count(camera, 4)
        assert camera.transfer_info() == TransferInfo(3, 4)
        assert camera.get(Prop.TRANSFERINFO_LOSTCOUNT) == 1
        with pytest.raises(DcamError) as excinfo:
            camera.lock_frame(2)
        refused(excinfo, "dcambuf_lockframe(2)", ErrorCode.BUSY)
        for _ in range(5):
            camera.fire_trigger()
        wait_count(camera, 9)
        assert camera.transfer_info() == TransferInfo(3, 9)
        assert camera.get(Prop.TRANSFERINFO_LOSTCOUNT) == 2
        assert [camera.lock_frame(k).number for k in (0, 1, 3, 4)] == [5, 6, 8, 4]
        with pytest.raises(DcamError) as excinfo:
            camera.lock_frame(2)
        refused(excinfo, "dcambuf_lockframe(2)", ErrorCode.BUSY)


def test_a_dropped_frame_leaves_the_slots_earlier_frame(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, faults="drop_frame=4")
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 64, 8)
        shortest_exposure(camera)
        camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
        camera.alloc(3)
        camera.start()
        for _ in range(6):
            camera.fire_trigger()
        wait_count(camera, 6)
        assert camera.transfer_info() == TransferInfo(2, 6)
        frame = camera.lock_frame(1)
        assert frame.number == 1, "frame 4 never reached buffer index 1"
        np.testing.assert_array_equal(frame.pixels, expected_frame(1, 8, 64, PixelType.MONO16))
        assert [camera.lock_frame(k).number for k in (0, 2)] == [3, 5]


def test_nothing_arrives_after_timeout_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, faults="timeout_after=3")
    with DcamApi(library) as api, api.open(0) as camera:
        subarray(camera, 64, 8)
        shortest_exposure(camera)
        camera.alloc(8)
        camera.start()
        wait_count(camera, 3)
        for _ in range(3):  # events of frames already counted may still be latched
            if not camera.wait_frame(0.05):
                break
        assert not camera.wait_frame(0.05)
        assert camera.transfer_info() == TransferInfo(2, 3)
        assert camera.status() == CaptureStatus.BUSY


def test_the_device_vanishes_after_vanish_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    configure(monkeypatch, tmp_path, faults="vanish_after=2")
    with DcamApi(library) as api:
        camera = api.open(0)
        subarray(camera, 64, 8)
        shortest_exposure(camera)
        camera.set(Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE)
        camera.alloc(8)
        camera.start()
        camera.fire_trigger()
        camera.fire_trigger()
        wait_count(camera, 2)
        assert camera.lock_frame(-1).number == 1
        camera.fire_trigger()
        with pytest.raises(DcamError) as excinfo:
            camera.wait_frame(WAIT_S)
        refused(excinfo, "dcamwait_start(FRAMEREADY)", ErrorCode.NOCAMERA)
        actions: list[tuple[Callable[[], object], str]] = [
            (camera.status, "dcamcap_status"),
            (camera.fire_trigger, "dcamcap_firetrigger"),
            (lambda: camera.get(Prop.EXPOSURETIME), "dcamprop_getvalue(EXPOSURETIME)"),
            (lambda: camera.lock_frame(0), "dcambuf_lockframe(0)"),
            (lambda: api.device_string(0, IdStr.MODEL), "dcamdev_getstring(device 0, MODEL)"),
        ]
        for action, call in actions:
            with pytest.raises(DcamError) as excinfo:
                action()
            refused(excinfo, call, ErrorCode.NOCAMERA)
        camera.close()


@pytest.mark.parametrize(
    ("code", "expected"),
    [("DCAMERR_NOCONNECTION", ErrorCode.NOCONNECTION), ("0x82001001", ErrorCode.FAILOPENCAMERA)],
)
def test_open_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str, code: str, expected: ErrorCode
) -> None:
    configure(monkeypatch, tmp_path, faults=f"open_error={code}")
    with DcamApi(library) as api:
        with pytest.raises(DcamError) as excinfo:
            api.open(0)
        refused(excinfo, "dcamdev_open(0)", expected)
        assert api.device_string(0, IdStr.MODEL) == "C13440-20CU"


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ("lose_frame=3", "DCAM_FAKE_FAULTS: unknown key 'lose_frame'"),
        ("drop_frame=x", "DCAM_FAKE_FAULTS: drop_frame 'x' is not a frame number"),
        ("open_error=DCAMERR_SUCCESS", "open_error 'DCAMERR_SUCCESS' is neither"),
        ("timeout_after", "DCAM_FAKE_FAULTS: expected key=value, got 'timeout_after'"),
    ],
)
def test_bad_faults_fail_init(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    library: str,
    faults: str,
    reason: str,
) -> None:
    monkeypatch.setenv(FAULTS_VARIABLE, faults)
    with pytest.raises(DcamError) as excinfo:
        DcamApi(library)
    refused(excinfo, "dcamapi_init", ErrorCode.INVALIDMODULE)
    assert reason in capfd.readouterr().err
    monkeypatch.delenv(FAULTS_VARIABLE)
    DcamApi(library).uninit()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("model = ORCA-Quest\n", "line 1: model 'ORCA-Quest': the fake simulates"),
        ("# fine\nframe_rate = 10\n", "line 2: unknown key 'frame_rate'"),
        ("trigger_period_ms = -1\n", "line 1: bad value '-1' of key 'trigger_period_ms'"),
        ("trigger_width_ms = 20\n", "trigger_width_ms 20 must be shorter than trigger_period_ms"),
        ("just words\n", "line 1: expected 'key = value', got 'just words'"),
    ],
)
def test_bad_config_files_fail_init(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    library: str,
    text: str,
    reason: str,
) -> None:
    path = tmp_path / "hand.conf"
    path.write_text(text)
    monkeypatch.setenv(CONFIG_VARIABLE, str(path))
    with pytest.raises(DcamError) as excinfo:
        DcamApi(library)
    refused(excinfo, "dcamapi_init", ErrorCode.INVALIDMODULE)
    assert reason in capfd.readouterr().err


def test_a_config_file_by_model_number(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str
) -> None:
    path = tmp_path / "hand.conf"
    path.write_text("model = C14440-20UP\n")
    monkeypatch.setenv(CONFIG_VARIABLE, str(path))
    with DcamApi(library) as api, api.open(0) as camera:
        assert camera.string(IdStr.CAMERA_SERIESNAME) == "ORCA-Fusion"
        assert camera.attr(Prop.IMAGE_PIXELTYPE) == PropertyRange(1, 5, 0)


# ---- the library ---------------------------------------------------------------------


def test_a_missing_or_wrong_library_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "libdcamapi.so"
    with pytest.raises(LibraryNotFound) as excinfo:
        DcamApi(missing)
    assert str(excinfo.value) == (
        f"cannot load {missing} as DCAM-API: it must be Hamamatsu's libdcamapi (given by the "
        "streamer's --library or $DCAM_SDK_LIBRARY, default /usr/local/lib/libdcamapi.so): "
        "no such file"
    )
    assert isinstance(excinfo.value, DcamError)
    not_a_library = tmp_path / "text.so"
    not_a_library.write_text("not ELF\n")
    with pytest.raises(LibraryNotFound, match=f"cannot load {not_a_library} as DCAM-API"):
        DcamApi(not_a_library)
    other = importlib.util.find_spec("receiver._chunks")
    assert other is not None
    assert other.origin is not None
    with pytest.raises(LibraryNotFound, match="it has no function dcam"):
        DcamApi(other.origin)
    assert default_library() == Path("/usr/local/lib/libdcamapi.so")
    monkeypatch.setenv(LIBRARY_VARIABLE, str(missing))
    assert default_library() == missing
    with pytest.raises(LibraryNotFound, match=f"cannot load {missing}"):
        DcamApi()


# ---- the unpacking helpers and the fake's references ------------------------------------


@pytest.mark.parametrize(("width", "pad"), [(6, 0), (1000, 4), (7, 0), (7, 3)])
def test_unpacking_round_trips(width: int, pad: int) -> None:
    rng = np.random.default_rng(width)
    height = 5
    pixels = rng.integers(0, 4096, size=(height, width), dtype=np.uint16)
    even = np.pad(pixels, ((0, 0), (0, width % 2)))
    used = (3 * width + 1) // 2
    rowbytes = used + pad
    for low_first, unpack in ((True, unpack_mono12p), (False, unpack_mono12)):
        packed = reference_pack(even, 3 * even.shape[1] // 2 + pad, low_first)[:, :rowbytes]
        np.testing.assert_array_equal(unpack(packed, height, width, rowbytes), pixels)
        np.testing.assert_array_equal(unpack(packed.tobytes(), height, width, rowbytes), pixels)
    assert unpack_mono12p(b"\x21\x43\x65", 1, 2, 3).tolist() == [[0x321, 0x654]]
    assert unpack_mono12(b"\x21\x43\x65", 1, 2, 3).tolist() == [[0x213, 0x654]]


def test_unpacking_refuses_short_input() -> None:
    with pytest.raises(ValueError, match="rowbytes 8 is less than the 9 bytes of 6 pixels"):
        unpack_mono12p(bytes(32), 2, 6, 8)
    with pytest.raises(ValueError, match="17 bytes, less than 2 rows of 9"):
        unpack_mono12(bytes(17), 2, 6, 9)


def test_expected_frame_is_the_formula() -> None:
    frame = expected_frame(3, 4, 2000, PixelType.MONO16, top=10, left=5)
    assert frame.dtype == np.uint16
    assert frame[2, 1000] == (3 * 7 + 12 * 3 + 1005) & 0xFFFF
    packed = expected_frame(600, 4, 2000, PixelType.MONO12P)
    assert packed[1, 1999] == (600 * 7 + 3 + 1999) & 0xFFF
    assert expected_frame(1, 1, 300, PixelType.MONO8).max() == 0xFF
    with pytest.raises(ValueError, match="the fake makes MONO8"):
        expected_frame(0, 1, 1, 0x21)


def test_the_config_model_refuses_what_the_fake_would() -> None:
    assert ConfigFile().render().splitlines()[1:] == [
        "model = ORCA-Flash4.0 V3",
        "camera_id = S/N: 000001",
        "trigger_period_ms = 10.0",
        "trigger_delay_ms = 0.0",
        "trigger_width_ms = 1.0",
    ]
    with pytest.raises(ValueError, match="must be shorter than trigger_period_ms"):
        ConfigFile(trigger_period_ms=2.0, trigger_width_ms=2.0)
    with pytest.raises(ValueError, match="model"):
        ConfigFile.model_validate({"model": "ORCA-Quest"})
