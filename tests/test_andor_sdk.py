"""Andor's SDK3 API through its binding, against the compiled fake (no mocks).

Every call of atcore_subset.h is exercised: the library's life cycle and its
refusals, opening and closing cameras, every feature with its range and
refusals (the AT_ERR_* name in the message), enumerations and their exact
strings, the FrameRate limit, the AOI, the buffer queue, series in the
trigger modes with every pixel checked for each encoding, and the fake's
faults. Times are only ever checked from below (a frame cannot come before
it is due), never from above, so a loaded machine cannot make a test fail.
"""

from __future__ import annotations

import importlib.util
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sim.andor_fake import (
    CONFIG_ENV,
    FAULTS_ENV,
    MODELS,
    ConfigFile,
    Encoding,
    expected_frame,
    last_error,
    library_path,
)
from streamers.andor_sdk.binding import (
    AT_HANDLE_SYSTEM,
    AT_INFINITE,
    AndorCamera,
    AndorError,
    AndorLibrary,
    ErrorCode,
    ImageLayout,
    LibraryNotFound,
    aligned_buffer,
    error_name,
    ffi,
    unpack,
    unpack_mono12packed,
)

EXPOSURE_S = 1e-4
RATE_HZ = 2000.0
"""Series of a few frames take a few ms."""
WAIT_S = 10.0
"""A timeout for buffers that do get filled; generous, since a test never waits it out."""
AOI = {"width": 13, "height": 7, "left": 5, "top": 9}
"""Odd width (a half-filled Mono12Packed triple, padded rows) away from the sensor's corner."""
TRIGGER_MODES = ["Internal", "Software", "External", "External Start", "External Exposure"]


@pytest.fixture(scope="module")
def library() -> str:
    return library_path()


@pytest.fixture(scope="module")
def raw(library: str) -> Any:
    """The fake through the binding's own declarations, for calls the binding never makes."""
    return ffi.dlopen(library)


@pytest.fixture(autouse=True)
def default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    monkeypatch.delenv("ANDOR_SDK_LIBRARY", raising=False)


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> ConfigFile:
    config = ConfigFile(**settings)
    monkeypatch.setenv(CONFIG_ENV, str(config.write(tmp_path / "fake-andor.conf")))
    return config


@pytest.fixture
def sdk(library: str) -> Iterator[AndorLibrary]:
    with AndorLibrary(library) as initialised:
        yield initialised


@pytest.fixture
def camera(sdk: AndorLibrary) -> Iterator[AndorCamera]:
    with sdk.open(0) as opened:
        yield opened


def refused(excinfo: pytest.ExceptionInfo[AndorError], code: ErrorCode) -> AndorError:
    error = excinfo.value
    assert error.code == code
    assert error.name == f"AT_ERR_{code.name}"
    assert f"{error.name} ({int(code)})" in str(error)
    return error


def small(
    camera: AndorCamera,
    encoding: Encoding = "Mono16",
    frames: int = 4,
    *,
    cycle: str = "Fixed",
    trigger: str = "Internal",
) -> ImageLayout:
    """The camera set to the small AOI, a short exposure and a fast rate."""
    camera.set_enum("PixelEncoding", encoding)
    camera.set_int("AOIWidth", AOI["width"])
    camera.set_int("AOIHeight", AOI["height"])
    camera.set_int("AOILeft", AOI["left"])
    camera.set_int("AOITop", AOI["top"])
    camera.set_float("ExposureTime", EXPOSURE_S)
    camera.set_float("FrameRate", RATE_HZ)
    camera.set_enum("CycleMode", cycle)
    camera.set_int("FrameCount", frames)
    camera.set_enum("TriggerMode", trigger)
    return camera.image_layout()


def queue_new(camera: AndorCamera, count: int) -> list[npt.NDArray[np.uint8]]:
    buffers = [camera.new_buffer() for _ in range(count)]
    for buffer in buffers:
        camera.queue(buffer)
    return buffers


def frame_number(image: npt.NDArray[Any]) -> int:
    """The frame a small-AOI Mono16 image is, from its first pixel (see expected_frame)."""
    first = int(image[0, 0]) - (AOI["top"] - 1) * 3 - (AOI["left"] - 1)
    assert first % 7 == 0
    return first // 7


def read_numbers(camera: AndorCamera, layout: ImageLayout, timeout_s: float) -> list[int]:
    """The frame numbers of every buffer filled until a wait times out."""
    numbers = []
    while (buffer := camera.wait(timeout_s)) is not None:
        numbers.append(frame_number(layout.unpack(buffer)))
    return numbers


def pack_mono12packed(image: npt.NDArray[np.uint16], stride: int) -> npt.NDArray[np.uint8]:
    """The reference packing (docs/camera-sdk-facts.md section 2.6), rows zero-padded to stride."""
    height, width = image.shape
    pairs = width // 2
    a = image[:, 0 : 2 * pairs : 2].astype(np.uint16)
    b = image[:, 1 : 2 * pairs : 2].astype(np.uint16)
    packed = np.zeros((height, stride), dtype=np.uint8)
    triples = packed[:, : 3 * pairs].reshape(height, pairs, 3)
    triples[..., 0] = a >> 4
    triples[..., 1] = (a & 0xF) | ((b & 0xF) << 4)
    triples[..., 2] = b >> 4
    if width % 2:
        packed[:, 3 * pairs] = image[:, -1] >> 4
        packed[:, 3 * pairs + 1] = image[:, -1] & 0xF
    return packed.reshape(-1)


# ---- the declarations and the references -------------------------------------------------


def test_the_constants_are_the_researched_values(raw: Any) -> None:
    declared = {name: getattr(raw, name) for name in dir(raw) if name.startswith("AT_ERR_")}
    assert declared == {error_name(member): int(member) for member in ErrorCode if member}
    assert (raw.AT_SUCCESS, raw.AT_ERR_NOTINITIALISED, raw.AT_ERR_NOTIMPLEMENTED) == (0, 1, 2)
    assert (raw.AT_ERR_NOTWRITABLE, raw.AT_ERR_OUTOFRANGE, raw.AT_ERR_CONNECTION) == (5, 6, 10)
    assert (raw.AT_ERR_NODATA, raw.AT_ERR_TIMEDOUT, raw.AT_ERR_INVALIDSIZE) == (11, 13, 15)
    assert (raw.AT_ERR_INVALIDALIGNMENT, raw.AT_ERR_DEVICEINUSE) == (16, 38)
    assert raw.AT_ERR_HARDWARE_OVERFLOW == 100
    assert (raw.AT_INFINITE, AT_INFINITE) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert (raw.AT_HANDLE_SYSTEM, AT_HANDLE_SYSTEM, raw.AT_HANDLE_UNINITIALISED) == (1, 1, -1)
    assert (raw.AT_TRUE, raw.AT_FALSE) == (1, 0)
    assert (ffi.sizeof("AT_WC"), ffi.sizeof("AT_64"), ffi.sizeof("AT_H")) == (4, 8, 4)
    assert error_name(13) == "AT_ERR_TIMEDOUT"
    assert error_name(0) == "AT_SUCCESS"
    assert error_name(12345) == "unknown"
    assert str(AndorError("AT_Open", 12345)) == "AT_Open: unknown (12345)"


def test_expected_frame_is_the_formula() -> None:
    frame = expected_frame(600, 4, 1536, "Mono12", left=3, top=2)
    assert frame.dtype == np.uint16
    assert frame.shape == (4, 1536)
    assert frame[2, 1000] == (600 * 7 + (2 - 1 + 2) * 3 + (3 - 1 + 1000)) & 0xFFF
    assert expected_frame(600, 4, 1536, "Mono16")[2, 1000] == 600 * 7 + 2 * 3 + 1000
    wide = expected_frame(10_000, 2, 2, "Mono32")
    assert wide.dtype == np.uint32
    assert wide[1, 1] == ((10_000 * 7 + 4) & 0xFFFF) * 0x10001
    with pytest.raises(ValueError, match="the fake has Mono12"):
        expected_frame(0, 1, 1, "Mono8")  # type: ignore[arg-type]


def test_unpacking_round_trips_the_reference_packing() -> None:
    rng = np.random.default_rng(7)
    for width in (1, 2, 3, 8, 13):
        image = rng.integers(0, 4096, size=(5, width), dtype=np.uint16)
        stride = (3 * width + 1) // 2 + 3
        packed = pack_mono12packed(image, stride)
        np.testing.assert_array_equal(unpack_mono12packed(packed, 5, width, stride), image)
        np.testing.assert_array_equal(
            unpack(packed.tobytes(), 5, width, stride, "Mono12Packed"), image
        )
    words = np.arange(12, dtype="<u2").reshape(3, 4)
    padded = np.zeros((3, 6), dtype="<u2")
    padded[:, :4] = words
    for encoding in ("Mono12", "Mono16"):
        np.testing.assert_array_equal(unpack(padded.tobytes(), 3, 4, 12, encoding), words)
    long_words = np.arange(6, dtype="<u4").reshape(2, 3) * 0x10001
    assert unpack(long_words.tobytes(), 2, 3, 12, "Mono32").tolist() == long_words.tolist()


def test_unpacking_refuses_what_cannot_be_an_image() -> None:
    with pytest.raises(ValueError, match="a row of 13 Mono12Packed pixels has 20 bytes"):
        unpack(bytes(100), 2, 13, 19, "Mono12Packed")
    with pytest.raises(ValueError, match="100 bytes: 5 rows of stride 24 need 120"):
        unpack(bytes(100), 5, 12, 24, "Mono16")
    with pytest.raises(ValueError, match="both must be 1 or more"):
        unpack(bytes(100), 0, 12, 24, "Mono16")
    with pytest.raises(ValueError, match="PixelEncoding 'Mono8'"):
        unpack(bytes(100), 1, 1, 8, "Mono8")


def test_aligned_buffers() -> None:
    for size in (0, 1, 120, 11_059_200):
        buffer = aligned_buffer(size)
        assert buffer.size == size
        assert buffer.dtype == np.uint8
        assert buffer.ctypes.data % 8 == 0
    assert aligned_buffer(10, alignment=4096).ctypes.data % 4096 == 0
    with pytest.raises(ValueError, match="impossible"):
        aligned_buffer(-1)


# ---- the library ----------------------------------------------------------------------


def test_nothing_works_before_initialise_and_after_finalise(library: str, raw: Any) -> None:
    sdk = AndorLibrary(library)
    assert not sdk.initialised
    with pytest.raises(AndorError) as excinfo:
        sdk.device_count()
    error = refused(excinfo, ErrorCode.NOTINITIALISED)
    assert (error.call, error.feature) == ("AT_GetInt", "DeviceCount")
    assert str(error) == "AT_GetInt(DeviceCount): AT_ERR_NOTINITIALISED (1)"
    assert last_error() == "AT_InitialiseLibrary has not been called"
    with pytest.raises(AndorError) as excinfo:
        sdk.open(0)
    refused(excinfo, ErrorCode.NOTINITIALISED)
    assert raw.AT_FinaliseLibrary() == ErrorCode.NOTINITIALISED
    sdk.finalise()  # the binding finalises only what it initialised
    with sdk:
        assert sdk.initialised
        assert sdk.device_count() == 1
        sdk.initialise()  # once is enough
    assert not sdk.initialised
    handle = ffi.new("AT_H *")
    assert raw.AT_Open(0, handle) == ErrorCode.NOTINITIALISED
    assert raw.AT_Close(100) == ErrorCode.NOTINITIALISED


def test_system_handle_and_two_cameras(
    library: str, raw: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, model="zyla-4.2", serial="VSC-01234", cameras=2)
    with AndorLibrary(library) as sdk:
        assert sdk.device_count() == 2
        assert sdk.software_version() == "fake-atcore 1.0 (detector-daq sim)"
        first, second = sdk.open(0), sdk.open(1)
        assert first.handle != second.handle
        assert [first.get_string("SerialNumber"), second.get_string("SerialNumber")] == [
            "VSC-01234",
            "VSC-01234-1",
        ]
        assert first.get_string("CameraModel") == "Zyla 4.2 (fake)"
        with pytest.raises(AndorError) as excinfo:
            sdk.open(0)
        error = refused(excinfo, ErrorCode.DEVICEINUSE)
        assert str(error) == "AT_Open: AT_ERR_DEVICEINUSE (38): camera index 0"
        with pytest.raises(AndorError) as excinfo:
            sdk.open(2)
        refused(excinfo, ErrorCode.OUTOFRANGE)
        old = first.handle
        first.close()
        again = sdk.open(0)
        assert again.handle != old, "a new open gives a new handle"
        value, answer = ffi.new("AT_64 *"), ffi.new("AT_BOOL *")
        assert raw.AT_GetInt(AT_HANDLE_SYSTEM, "AOIWidth", value) == ErrorCode.NOTIMPLEMENTED
        assert raw.AT_IsWritable(AT_HANDLE_SYSTEM, "DeviceCount", answer) == ErrorCode.SUCCESS
        assert answer[0] == 0
    assert second.handle is None, "finalise closes the cameras opened through the library"
    assert again.handle is None


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_models_sensor(
    library: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    sensor = configure(tmp_path, monkeypatch, model=model).sensor
    with AndorLibrary(library) as sdk, sdk.open(0) as camera:
        assert camera.get_string("CameraModel") == sensor.camera_model
        assert (camera.get_int("SensorWidth"), camera.get_int("SensorHeight")) == (
            sensor.width,
            sensor.height,
        )
        assert camera.int_range("SensorWidth") == (sensor.width, sensor.width)
        assert (camera.get_int("AOIWidth"), camera.get_int("AOIHeight")) == (
            sensor.width,
            sensor.height,
        )
        assert (camera.get_int("AOILeft"), camera.get_int("AOITop")) == (1, 1)
        assert camera.int_range("AOIWidth") == (1, sensor.width)
        assert camera.get_float("ReadoutTime") == pytest.approx(
            sensor.height // 2 * sensor.row_time_s
        )


def test_the_default_is_one_zyla_5_5(camera: AndorCamera) -> None:
    assert camera.get_string("CameraModel") == "Zyla 5.5 (fake)"
    assert camera.get_string("SerialNumber") == "FAKE-0001"
    assert (camera.get_int("SensorWidth"), camera.get_int("SensorHeight")) == (2560, 2160)


def test_a_missing_or_wrong_library_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str
) -> None:
    missing = tmp_path / "libatcore.so"
    with pytest.raises(LibraryNotFound) as excinfo:
        AndorLibrary(missing)
    assert str(excinfo.value) == (
        f"cannot load {missing} as Andor's SDK3 library libatcore (the streamer's --library, "
        "or $ANDOR_SDK_LIBRARY): no such file"
    )
    with pytest.raises(LibraryNotFound, match="no Andor SDK3 library given: no path was passed"):
        AndorLibrary()
    monkeypatch.setenv("ANDOR_SDK_LIBRARY", library)
    assert str(AndorLibrary().path) == library
    not_a_library = tmp_path / "text.so"
    not_a_library.write_text("not ELF\n")
    with pytest.raises(LibraryNotFound, match="as Andor's SDK3 library libatcore"):
        AndorLibrary(not_a_library)
    other = importlib.util.find_spec("receiver._chunks")
    assert other is not None
    assert other.origin is not None
    with pytest.raises(LibraryNotFound, match="it has no function AT_"):
        AndorLibrary(other.origin)


def test_a_bad_configuration_is_refused_with_its_reason(
    library: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.conf"
    for text, reason in [
        ("model = zyla-5.5\nframe_rate = 10\n", f"{path} line 2: unknown key 'frame_rate'"),
        ("model = neo\n", f"{path} line 1: model 'neo' is not one of zyla-5.5"),
        ("cameras = 9\n", f"{path} line 1: bad value '9' of key 'cameras'"),
        ("unavailable_encodings = Mono8\n", f"{path} line 1: 'Mono8' of unavailable_encodings"),
        ("just words\n", f"{path} line 1: expected 'key = value'"),
    ]:
        path.write_text(text)
        monkeypatch.setenv(CONFIG_ENV, str(path))
        sdk = AndorLibrary(library)
        with pytest.raises(AndorError) as excinfo:
            sdk.initialise()
        assert str(refused(excinfo, ErrorCode.CONNECTION)) == (
            "AT_InitialiseLibrary: AT_ERR_CONNECTION (10)"
        )
        assert last_error().startswith(reason)
        assert not sdk.initialised
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "absent.conf"))
    with pytest.raises(AndorError):
        AndorLibrary(library).initialise()
    assert last_error().startswith(f"cannot open {tmp_path / 'absent.conf'} (ANDOR_FAKE_CONFIG)")


def test_the_configuration_model() -> None:
    text = ConfigFile(model="balor", unavailable_encodings=["Mono32"]).render()
    assert "model = balor\n" in text
    assert "trigger_period_ms = 10.0\n" in text
    assert "unavailable_encodings = Mono32\n" in text
    with pytest.raises(ValueError, match="leaves no pixel encoding"):
        ConfigFile(unavailable_encodings=["Mono12", "Mono12Packed", "Mono16", "Mono32"])
    with pytest.raises(ValueError):
        ConfigFile(cameras=5)


# ---- features ---------------------------------------------------------------------------


def test_typed_features_read_back_what_is_set(camera: AndorCamera) -> None:
    camera.set_int("FrameCount", 12)
    assert camera.get_int("FrameCount") == 12
    assert camera.int_range("FrameCount") == (1, 2**31 - 1)
    camera.set_float("ExposureTime", 0.002)
    assert camera.get_float("ExposureTime") == 0.002
    assert camera.float_range("ExposureTime") == (10e-6, 30.0)
    assert camera.get_bool("Overlap") is True
    camera.set_bool("Overlap", False)
    assert camera.get_bool("Overlap") is False
    assert camera.get_bool("CameraAcquiring") is False
    for feature in ("ExposureTime", "AOIWidth", "Overlap", "PixelEncoding", "AcquisitionStart"):
        assert camera.is_implemented(feature)
        assert camera.is_writable(feature), feature
    for feature in ("AOIStride", "ImageSizeBytes", "SensorWidth", "ReadoutTime", "CameraModel"):
        assert camera.is_implemented(feature)
        assert not camera.is_writable(feature), feature
    assert not camera.is_implemented("Temperature")
    assert camera.get_float("BytesPerPixel") == 2.0


def test_refusals_name_the_code_and_the_allowed_values(camera: AndorCamera) -> None:
    with pytest.raises(AndorError) as excinfo:
        camera.set_float("ExposureTime", 50.0)
    error = refused(excinfo, ErrorCode.OUTOFRANGE)
    assert (error.call, error.feature) == ("AT_SetFloat", "ExposureTime")
    assert str(error) == (
        "AT_SetFloat(ExposureTime): AT_ERR_OUTOFRANGE (6): 50 is outside the allowed 1e-05 to 30"
    )
    with pytest.raises(AndorError) as excinfo:
        camera.set_int("FrameCount", 0)
    assert str(refused(excinfo, ErrorCode.OUTOFRANGE)) == (
        "AT_SetInt(FrameCount): AT_ERR_OUTOFRANGE (6): 0 is outside the allowed 1 to 2147483647"
    )
    with pytest.raises(AndorError) as excinfo:
        camera.set_int("AOIStride", 64)
    assert str(refused(excinfo, ErrorCode.READONLY)) == "AT_SetInt(AOIStride): AT_ERR_READONLY (3)"
    with pytest.raises(AndorError) as excinfo:
        camera.get_float("AOIWidth")
    assert str(refused(excinfo, ErrorCode.NOTIMPLEMENTED)) == (
        "AT_GetFloat(AOIWidth): AT_ERR_NOTIMPLEMENTED (2)"
    )
    with pytest.raises(AndorError) as excinfo:
        camera.get_int("Temperature")
    refused(excinfo, ErrorCode.NOTIMPLEMENTED)
    with pytest.raises(AndorError) as excinfo:
        camera.is_writable("Temperature")
    refused(excinfo, ErrorCode.NOTIMPLEMENTED)
    with pytest.raises(AndorError) as excinfo:
        camera.command("SensorCooling")
    refused(excinfo, ErrorCode.NOTIMPLEMENTED)


def test_calls_with_null_arguments_or_short_strings(raw: Any, camera: AndorCamera) -> None:
    handle = camera.handle
    assert raw.AT_GetInt(handle, "AOIWidth", ffi.NULL) == ErrorCode.NULL_VALUE
    assert raw.AT_GetIntMax(handle, "AOIWidth", ffi.NULL) == ErrorCode.NULL_MAXVALUE
    assert raw.AT_GetFloatMin(handle, "FrameRate", ffi.NULL) == ErrorCode.NULL_MINVALUE
    assert raw.AT_IsImplemented(handle, ffi.NULL, ffi.new("AT_BOOL *")) == ErrorCode.NULL_FEATURE
    assert raw.AT_Open(0, ffi.NULL) == ErrorCode.NULL_HANDLE
    assert raw.AT_QueueBuffer(handle, ffi.NULL, 8) == ErrorCode.NULL_QUEUE_PTR
    assert raw.AT_WaitBuffer(handle, ffi.NULL, ffi.new("int *"), 0) == ErrorCode.NULL_WAIT_PTR
    assert raw.AT_GetInt(12345, "AOIWidth", ffi.new("AT_64 *")) == ErrorCode.INVALIDHANDLE
    assert raw.AT_Flush(AT_HANDLE_SYSTEM) == ErrorCode.INVALIDHANDLE
    short = ffi.new("AT_WC[]", 6)
    assert raw.AT_GetString(handle, "CameraModel", short, 6) == ErrorCode.EXCEEDEDMAXSTRINGLENGTH
    assert raw.AT_GetEnumStringByIndex(handle, "CycleMode", 0, short, 5) == (
        ErrorCode.EXCEEDEDMAXSTRINGLENGTH
    )
    assert raw.AT_GetEnumStringByIndex(handle, "CycleMode", 0, short, 6) == ErrorCode.SUCCESS
    assert ffi.string(short) == "Fixed"
    assert raw.AT_GetEnumStringByIndex(handle, "CycleMode", 2, short, 6) == ErrorCode.OUTOFRANGE
    assert raw.AT_SetEnumIndex(handle, "CycleMode", 1) == ErrorCode.SUCCESS
    assert camera.get_enum("CycleMode") == "Continuous"
    assert raw.AT_SetEnumIndex(handle, "CycleMode", 7) == ErrorCode.INDEXNOTIMPLEMENTED
    assert raw.AT_SetBool(handle, "Overlap", 2) == ErrorCode.OUTOFRANGE


def test_enumerations_have_the_exact_strings(camera: AndorCamera) -> None:
    assert camera.enum_options("TriggerMode") == TRIGGER_MODES
    assert camera.enum_options("CycleMode") == ["Fixed", "Continuous"]
    assert camera.enum_options("PixelEncoding") == ["Mono12", "Mono12Packed", "Mono16", "Mono32"]
    assert (camera.get_enum("TriggerMode"), camera.get_enum("CycleMode")) == ("Internal", "Fixed")
    for feature in ("TriggerMode", "CycleMode", "PixelEncoding"):
        for option in camera.enum_options(feature):
            camera.set_enum(feature, option)
            assert camera.get_enum(feature) == option
    with pytest.raises(AndorError) as excinfo:
        camera.set_enum("TriggerMode", "external")
    assert str(refused(excinfo, ErrorCode.STRINGNOTIMPLEMENTED)) == (
        "AT_SetEnumString(TriggerMode): AT_ERR_STRINGNOTIMPLEMENTED (19): 'external' is not one "
        f"of the available {TRIGGER_MODES}"
    )


def test_unavailable_options_are_left_out(
    library: str, raw: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, model="balor", unavailable_encodings=["Mono12", "Mono32"])
    with AndorLibrary(library) as sdk, sdk.open(0) as camera:
        assert camera.enum_options("PixelEncoding") == ["Mono12Packed", "Mono16"]
        assert camera.get_enum("PixelEncoding") == "Mono12Packed", "the first available"
        count, available = ffi.new("int *"), ffi.new("AT_BOOL *")
        assert raw.AT_GetEnumCount(camera.handle, "PixelEncoding", count) == ErrorCode.SUCCESS
        assert count[0] == 4, "unavailable options are still implemented"
        assert raw.AT_IsEnumIndexAvailable(camera.handle, "PixelEncoding", 3, available) == 0
        assert available[0] == 0
        assert raw.AT_SetEnumIndex(camera.handle, "PixelEncoding", 3) == (
            ErrorCode.INDEXNOTAVAILABLE
        )
        with pytest.raises(AndorError) as excinfo:
            camera.set_enum("PixelEncoding", "Mono32")
        assert str(refused(excinfo, ErrorCode.STRINGNOTAVAILABLE)).endswith(
            "'Mono32' is not one of the available ['Mono12Packed', 'Mono16']"
        )


def test_frame_rate_limit_follows_the_aoi_height_and_the_exposure(camera: AndorCamera) -> None:
    camera.set_enum("PixelEncoding", "Mono12Packed")
    camera.set_float("ExposureTime", 10e-6)
    heights = (8, 64, 512, 1080, 2160)
    limits, readouts = [], []
    for height in heights:
        camera.set_int("AOIHeight", height)
        readouts.append(camera.get_float("ReadoutTime"))
        limits.append(camera.float_range("FrameRate")[1])
    # An AOI from the sensor's top: its rows above the centre take one row time each, and
    # the rows below the centre are read beside them.
    assert readouts == pytest.approx([min(h, 1080) * 9.24e-6 for h in heights])
    assert all(later <= earlier for earlier, later in itertools.pairwise(limits))
    assert limits[0] > limits[1] > limits[2] > limits[3]
    assert limits[0] == pytest.approx(1.0 / readouts[0]), "readout-limited at a short exposure"
    assert limits[-1] == pytest.approx(100.0, rel=0.01), "A10: 100 fps at 12 bits, full frame"
    camera.set_float("ExposureTime", 0.05)
    assert camera.float_range("FrameRate")[1] == pytest.approx(20.0), "exposure-limited"
    assert camera.get_float("FrameRate") <= 20.0, "FrameRate is lowered to the new limit"
    camera.set_bool("Overlap", False)
    assert camera.float_range("FrameRate")[1] == pytest.approx(1 / (0.05 + readouts[-1]))


def test_the_readout_is_the_longer_half_of_the_aoi(camera: AndorCamera) -> None:
    """The Zyla reads both halves from the centre at once (research section 2.5)."""
    camera.set_int("AOIHeight", 1080)
    at_the_top = camera.get_float("ReadoutTime")
    camera.set_int("AOITop", 541)
    centred = camera.get_float("ReadoutTime")
    assert at_the_top == pytest.approx(1080 * 9.24e-6)
    assert centred == pytest.approx(540 * 9.24e-6)


def test_frame_rate_above_the_limit_is_refused_and_the_limit_accepted(
    camera: AndorCamera,
) -> None:
    camera.set_float("ExposureTime", 10e-6)
    camera.set_enum("PixelEncoding", "Mono16")
    low, high = camera.float_range("FrameRate")
    assert high == pytest.approx(75.0), "A10: 75 fps at 16 bits, full frame, Camera Link"
    camera.set_float("FrameRate", high)
    assert camera.get_float("FrameRate") == high
    camera.set_float("FrameRate", low)
    with pytest.raises(AndorError) as excinfo:
        camera.set_float("FrameRate", high * 1.01)
    assert str(refused(excinfo, ErrorCode.OUTOFRANGE)) == (
        f"AT_SetFloat(FrameRate): AT_ERR_OUTOFRANGE (6): {high * 1.01:.10g} is outside the "
        f"allowed {low:.10g} to {high:.10g}"
    )


def test_aoi_limits_depend_on_each_other(camera: AndorCamera) -> None:
    camera.set_int("AOIWidth", 100)
    assert camera.int_range("AOILeft") == (1, 2461)
    camera.set_int("AOILeft", 2461)
    assert camera.int_range("AOIWidth") == (1, 100)
    with pytest.raises(AndorError) as excinfo:
        camera.set_int("AOIWidth", 101)
    assert str(refused(excinfo, ErrorCode.OUTOFRANGE)).endswith(
        "101 is outside the allowed 1 to 100"
    )
    camera.set_int("AOILeft", 1)
    camera.set_int("AOIWidth", 2560)
    for feature, value in [("AOILeft", 2), ("AOILeft", 0), ("AOIHeight", 0), ("AOITop", 2)]:
        with pytest.raises(AndorError) as excinfo:
            camera.set_int(feature, value)
        refused(excinfo, ErrorCode.OUTOFRANGE)
    camera.set_int("AOIHeight", 10)
    camera.set_int("AOITop", 2151)
    assert camera.get_int("AOITop") == 2151


@pytest.mark.parametrize(
    ("encoding", "stride", "bytes_per_pixel"),
    [("Mono12", 32, 2.0), ("Mono12Packed", 24, 1.5), ("Mono16", 32, 2.0), ("Mono32", 56, 4.0)],
)
def test_stride_and_image_size(
    camera: AndorCamera, encoding: str, stride: int, bytes_per_pixel: float
) -> None:
    camera.set_enum("PixelEncoding", encoding)
    camera.set_int("AOIWidth", 13)
    camera.set_int("AOIHeight", 7)
    assert camera.get_int("AOIStride") == stride, "the row's bytes rounded up to 8"
    assert camera.get_int("ImageSizeBytes") == stride * 7
    assert camera.get_float("BytesPerPixel") == bytes_per_pixel
    assert camera.image_layout() == ImageLayout(7, 13, stride, encoding, stride * 7)


def test_settings_are_not_writable_while_acquiring(camera: AndorCamera) -> None:
    small(camera, cycle="Continuous")
    camera.command("AcquisitionStart")
    assert camera.get_bool("CameraAcquiring")
    assert not camera.is_writable("ExposureTime")
    assert not camera.is_writable("AcquisitionStart")
    assert camera.is_writable("AcquisitionStop")
    changes: list[Callable[[], None]] = [
        lambda: camera.set_float("ExposureTime", 0.001),
        lambda: camera.set_int("AOIWidth", 8),
        lambda: camera.set_enum("PixelEncoding", "Mono12"),
        lambda: camera.set_bool("Overlap", False),
        lambda: camera.command("AcquisitionStart"),
    ]
    for change in changes:
        with pytest.raises(AndorError) as excinfo:
            change()
        assert refused(excinfo, ErrorCode.NOTWRITABLE).detail == "CameraAcquiring is True"
    camera.command("AcquisitionStop")
    assert not camera.get_bool("CameraAcquiring")
    camera.set_float("ExposureTime", 0.001)


# ---- the buffer queue -------------------------------------------------------------------


def test_queue_refuses_wrong_sizes_and_misaligned_buffers(camera: AndorCamera) -> None:
    layout = small(camera)
    with pytest.raises(AndorError) as excinfo:
        camera.queue(aligned_buffer(layout.size + 8))
    assert str(refused(excinfo, ErrorCode.INVALIDSIZE)) == (
        f"AT_QueueBuffer: AT_ERR_INVALIDSIZE (15): {layout.size + 8} bytes, ImageSizeBytes is "
        f"{layout.size}"
    )
    misaligned = aligned_buffer(layout.size + 1)[1:]
    with pytest.raises(AndorError) as excinfo:
        camera.queue(misaligned)
    assert "is not a multiple of 8" in refused(excinfo, ErrorCode.INVALIDALIGNMENT).detail
    with pytest.raises(ValueError, match="one-dimensional uint8"):
        camera.queue(np.zeros(layout.size // 2, dtype=np.uint16))
    buffer = camera.new_buffer()
    camera.queue(buffer)
    with pytest.raises(ValueError, match="queued already"):
        camera.queue(buffer)
    camera.set_int("AOIWidth", 8)
    with pytest.raises(AndorError) as excinfo:
        camera.command("AcquisitionStart")
    refused(excinfo, ErrorCode.INVALIDSIZE)
    assert last_error().startswith(f"a queued buffer has {layout.size} bytes")
    camera.flush()
    camera.queue(camera.new_buffer())
    camera.command("AcquisitionStart")


def test_the_queue_holds_1024_buffers(camera: AndorCamera) -> None:
    camera.set_int("AOIWidth", 1)
    camera.set_int("AOIHeight", 1)
    queue_new(camera, 1024)
    with pytest.raises(AndorError) as excinfo:
        camera.queue(camera.new_buffer())
    refused(excinfo, ErrorCode.BUFFERFULL)


@pytest.mark.parametrize("encoding", ["Mono16", "Mono12", "Mono12Packed", "Mono32"])
def test_a_fixed_internal_series_fills_every_buffer_with_its_frame(
    camera: AndorCamera, encoding: Encoding
) -> None:
    frames = 6
    layout = small(camera, encoding, frames)
    buffers = queue_new(camera, frames)
    begun = time.monotonic()
    camera.command("AcquisitionStart")
    for k in range(frames):
        buffer = camera.wait(WAIT_S)
        assert buffer is buffers[k], "buffers come back in the order they were queued"
        arrived = time.monotonic() - begun
        assert arrived >= k / RATE_HZ + EXPOSURE_S - 1e-4, f"frame {k} came before it was due"
        reference = expected_frame(
            k, AOI["height"], AOI["width"], encoding, left=AOI["left"], top=AOI["top"]
        )
        image = layout.unpack(buffer)
        assert image.dtype == reference.dtype
        np.testing.assert_array_equal(image, reference)
        if encoding == "Mono12Packed":
            rows = buffer.reshape(AOI["height"], layout.stride)[:, :20]
            packed = pack_mono12packed(reference.astype(np.uint16), layout.stride)
            np.testing.assert_array_equal(rows, packed.reshape(AOI["height"], -1)[:, :20])
    assert not camera.get_bool("CameraAcquiring"), "a Fixed series ends on its own"
    with pytest.raises(AndorError) as excinfo:
        camera.wait(WAIT_S)
    refused(excinfo, ErrorCode.NODATA)


def test_a_full_frame_is_the_expected_image(camera: AndorCamera) -> None:
    camera.set_enum("PixelEncoding", "Mono12Packed")
    camera.set_float("ExposureTime", 10e-6)
    layout = camera.image_layout()
    assert layout.size == 2560 * 3 // 2 * 2160
    queue_new(camera, 1)
    camera.command("AcquisitionStart")
    buffer = camera.wait(WAIT_S)
    assert buffer is not None
    np.testing.assert_array_equal(layout.unpack(buffer), expected_frame(0, 2160, 2560, "Mono12"))


def test_software_triggers_one_frame_each(camera: AndorCamera) -> None:
    layout = small(camera, frames=3, trigger="Software")
    with pytest.raises(AndorError) as excinfo:
        camera.command("SoftwareTrigger")
    refused(excinfo, ErrorCode.NOTWRITABLE)
    queue_new(camera, 3)
    camera.command("AcquisitionStart")
    assert camera.wait(0.05) is None, "no trigger, no frame"
    for k in range(3):
        assert camera.is_writable("SoftwareTrigger")
        camera.command("SoftwareTrigger")
        buffer = camera.wait(WAIT_S)
        assert buffer is not None
        assert frame_number(layout.unpack(buffer)) == k
    assert not camera.is_writable("SoftwareTrigger"), "all FrameCount frames are triggered"
    with pytest.raises(AndorError) as excinfo:
        camera.command("SoftwareTrigger")
    refused(excinfo, ErrorCode.NOTWRITABLE)
    assert not camera.get_bool("CameraAcquiring")


def test_software_trigger_is_refused_in_internal_mode(camera: AndorCamera) -> None:
    small(camera, cycle="Continuous")
    camera.command("AcquisitionStart")
    with pytest.raises(AndorError) as excinfo:
        camera.command("SoftwareTrigger")
    refused(excinfo, ErrorCode.NOTWRITABLE)


@pytest.mark.parametrize(
    ("trigger", "first_due_s", "spacing_s"),
    [
        ("External Start", 0.03, 1 / RATE_HZ),
        ("External", 0.03, 0.005),
        ("External Exposure", 0.03 + 0.0025, 0.005),
    ],
)
def test_the_pulse_generator_drives_the_external_modes(
    library: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trigger: str,
    first_due_s: float,
    spacing_s: float,
) -> None:
    configure(tmp_path, monkeypatch, trigger_delay_ms=30.0, trigger_period_ms=5.0)
    with AndorLibrary(library) as sdk, sdk.open(0) as camera:
        layout = small(camera, frames=4, trigger=trigger)
        queue_new(camera, 4)
        begun = time.monotonic()
        camera.command("AcquisitionStart")
        for k in range(4):
            buffer = camera.wait(WAIT_S)
            assert buffer is not None
            assert frame_number(layout.unpack(buffer)) == k
            assert time.monotonic() - begun >= first_due_s + k * spacing_s - 1e-4
        assert not camera.get_bool("CameraAcquiring")


def test_a_wait_without_a_trigger_times_out(
    library: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, trigger_delay_ms=60_000.0)
    with AndorLibrary(library) as sdk, sdk.open(0) as camera:
        small(camera, trigger="External")
        queue_new(camera, 1)
        camera.command("AcquisitionStart")
        begun = time.monotonic()
        assert camera.wait(0.05) is None
        assert time.monotonic() - begun >= 0.05 - 1e-3, "the timeout is waited out"
        assert camera.wait(0) is None
        with pytest.raises(ValueError, match="0 or more"):
            camera.wait(-1.0)


def test_frames_without_a_queued_buffer_are_lost(camera: AndorCamera) -> None:
    layout = small(camera, cycle="Continuous")
    queue_new(camera, 1)
    camera.command("AcquisitionStart")
    first = camera.wait(WAIT_S)
    assert first is not None
    assert frame_number(layout.unpack(first)) == 0
    time.sleep(0.02)  # 40 frames are due meanwhile, with no buffer for them
    camera.queue(first)
    again = camera.wait(WAIT_S)
    assert again is first
    assert frame_number(layout.unpack(again)) >= 40, "the numbering jumps over the lost frames"
    camera.command("AcquisitionStop")


def test_flush_drops_queued_and_filled_buffers(camera: AndorCamera) -> None:
    small(camera, frames=2)
    buffers = queue_new(camera, 3)
    camera.command("AcquisitionStart")
    while camera.get_bool("CameraAcquiring"):
        time.sleep(0.001)
    camera.flush()
    with pytest.raises(AndorError) as excinfo:
        camera.wait(WAIT_S)
    refused(excinfo, ErrorCode.NODATA)
    small(camera, cycle="Continuous")
    for buffer in buffers:
        camera.queue(buffer)  # the camera forgot them: no "queued already"
    camera.flush()
    camera.command("AcquisitionStart")
    assert camera.wait(0.05) is None, "nothing queued, nothing filled"
    camera.command("AcquisitionStop")


def test_stop_wakes_an_infinite_wait_which_releases_the_gil(camera: AndorCamera) -> None:
    """If the wait held the GIL, this thread could not stop the acquisition while it waits."""
    small(camera, trigger="Software")
    queue_new(camera, 1)
    camera.command("AcquisitionStart")
    outcome: list[BaseException | object] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        try:
            outcome.append(camera.wait(None))
        except AndorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    time.sleep(0.05)
    assert thread.is_alive()
    camera.command("AcquisitionStop")
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert isinstance(outcome[0], AndorError)
    assert outcome[0].code == ErrorCode.NODATA


def test_close_wakes_a_waiting_thread(sdk: AndorLibrary) -> None:
    camera = sdk.open(0)
    small(camera, trigger="Software")
    queue_new(camera, 1)
    camera.command("AcquisitionStart")
    outcome: list[BaseException | object] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        try:
            outcome.append(camera.wait(None))
        except AndorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    time.sleep(0.05)
    camera.close()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert isinstance(outcome[0], AndorError)
    assert outcome[0].code == ErrorCode.INVALIDHANDLE


def test_a_closed_camera_refuses_calls_and_closes_once(sdk: AndorLibrary) -> None:
    camera = sdk.open(0)
    camera.close()
    camera.close()
    assert camera.handle is None
    with pytest.raises(AndorError) as excinfo:
        camera.get_int("AOIWidth")
    assert str(refused(excinfo, ErrorCode.INVALIDHANDLE)) == (
        "AT_GetInt(AOIWidth): AT_ERR_INVALIDHANDLE (12): the camera is closed"
    )
    with pytest.raises(AndorError):
        camera.wait(0)


# ---- faults -----------------------------------------------------------------------------


def test_dropped_buffers_make_the_numbering_jump(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "drop_buffer=1,3")
    with AndorLibrary(library) as sdk, sdk.open(0) as camera:
        layout = small(camera, frames=6)
        queue_new(camera, 6)
        camera.command("AcquisitionStart")
        numbers = []
        with pytest.raises(AndorError) as excinfo:
            while True:
                buffer = camera.wait(WAIT_S)
                assert buffer is not None
                numbers.append(frame_number(layout.unpack(buffer)))
        refused(excinfo, ErrorCode.NODATA)
        assert numbers == [0, 2, 4, 5]


def test_after_timeout_after_frames_no_buffer_fills(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULTS_ENV, " timeout_after = 3 ")
    with AndorLibrary(library) as sdk, sdk.open(0) as camera:
        layout = small(camera, cycle="Continuous")
        queue_new(camera, 6)
        camera.command("AcquisitionStart")
        assert read_numbers(camera, layout, 0.1) == [0, 1, 2]
        assert camera.get_bool("CameraAcquiring"), "the camera still runs"
        assert last_error() == "no buffer was filled within 100 ms"
        camera.command("AcquisitionStop")


def test_a_vanished_camera_delivers_what_it_filled_then_refuses_every_call(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "vanish_after=2")
    with AndorLibrary(library) as sdk:
        camera = sdk.open(0)
        layout = small(camera, cycle="Continuous")
        queue_new(camera, 4)
        camera.command("AcquisitionStart")
        time.sleep(0.01)  # frames 0 and 1 are filled, and the camera is gone at frame 2
        numbers = []
        with pytest.raises(AndorError) as excinfo:
            while (buffer := camera.wait(WAIT_S)) is not None:
                numbers.append(frame_number(layout.unpack(buffer)))
        assert numbers == [0, 1]
        error = refused(excinfo, ErrorCode.CONNECTION)
        assert str(error) == "AT_WaitBuffer: AT_ERR_CONNECTION (10)"
        for call in (
            lambda: camera.get_int("AOIWidth"),
            lambda: camera.command("AcquisitionStop"),
            lambda: camera.queue(aligned_buffer(layout.size)),
            camera.flush,
            lambda: camera.wait(0),
        ):
            with pytest.raises(AndorError) as excinfo:
                call()
            refused(excinfo, ErrorCode.CONNECTION)
        with pytest.raises(AndorError) as excinfo:
            camera.close()
        refused(excinfo, ErrorCode.CONNECTION)
        assert camera.handle is None, "the handle is given up all the same"
        assert sdk.device_count() == 1, "the system handle still answers"
        sdk.open(0).close()


@pytest.mark.parametrize("code", [ErrorCode.DEVICEINUSE, ErrorCode.CONNECTION])
def test_open_error(library: str, monkeypatch: pytest.MonkeyPatch, code: ErrorCode) -> None:
    monkeypatch.setenv(FAULTS_ENV, f"open_error={int(code)}")
    with AndorLibrary(library) as sdk:
        with pytest.raises(AndorError) as excinfo:
            sdk.open(0)
        assert str(refused(excinfo, code)) == (
            f"AT_Open: AT_ERR_{code.name} ({int(code)}): camera index 0"
        )
        monkeypatch.delenv(FAULTS_ENV)
        sdk.open(0).close()


def test_bad_faults_are_refused_with_their_reason(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AndorLibrary(library) as sdk:
        for faults, reason in [
            ("drop_frame=1", "ANDOR_FAKE_FAULTS: unknown key 'drop_frame'"),
            ("drop_buffer=1,x", "ANDOR_FAKE_FAULTS: bad frame 'x' of drop_buffer"),
            ("vanish_after", "ANDOR_FAKE_FAULTS: expected key=value, got 'vanish_after'"),
            ("open_error=0", "ANDOR_FAKE_FAULTS: bad value '0' of open_error: an AT_ERR code"),
        ]:
            monkeypatch.setenv(FAULTS_ENV, faults)
            with pytest.raises(AndorError) as excinfo:
                sdk.open(0)
            refused(excinfo, ErrorCode.CONNECTION)
            assert last_error() == reason
