"""The DCAM adapter of camera-streamer against the compiled fake SDK (no mocks).

Every call goes through streamers.camera_dcam and streamers.dcam_sdk.binding into
sim/dcam_fake/fake_dcam.c, configured by DCAM_FAKE_CONFIG (written with
sim.dcam_fake.config_file) and DCAM_FAKE_FAULTS. The fake's cameras have their full
sensors (the adapter has no AOI), so series are short and exposures long enough that the
test, which checks every pixel of every frame, keeps up with the camera; times are only
ever checked from below.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from protocols.camera_control import CameraArm, CameraTrigger
from protocols.model import Image
from receiver.transforms.mono12p import decode, packed_size
from sim.dcam_fake import CONFIG_VARIABLE, FAULTS_VARIABLE, ConfigFile, expected_frame, library_path
from streamers.camera_adapter import CameraError, CameraFrame, CameraRefused
from streamers.camera_dcam import DcamAdapter, mono12p_bitstream, ring_size
from streamers.dcam_sdk.binding import LIBRARY_VARIABLE, PixelType

pytestmark = pytest.mark.timeout(60)
"""A fake that stops delivering must not hang the run."""

WAIT_S = 10.0
"""A timeout for frames that do come; a test never waits it out."""
FLASH_READOUT_S = 2048 * 9.744e-6 / 2
"""The fake's ORCA-Flash4.0 V3 reads its 2048 rows two per 9.744 us line."""
LIGHTNING_READOUT_S = 2592 * 12.608e-6 / 4
"""The fake's ORCA-Lightning reads its 2592 rows four per 12.608 us line."""

OpenCamera = Callable[..., DcamAdapter]


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (CONFIG_VARIABLE, FAULTS_VARIABLE, LIBRARY_VARIABLE):
        monkeypatch.delenv(variable, raising=False)


def describe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, faults: str = "", **fields: Any
) -> None:
    """The camera the next DCAM-API session finds, and its faults."""
    path = ConfigFile(**fields).write(tmp_path / "camera.conf")
    monkeypatch.setenv(CONFIG_VARIABLE, str(path))
    if faults:
        monkeypatch.setenv(FAULTS_VARIABLE, faults)
    else:
        monkeypatch.delenv(FAULTS_VARIABLE, raising=False)


@pytest.fixture
def open_camera(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[OpenCamera]:
    """Opens the fake camera an adapter at a time; closes them all (DCAM has one session)."""
    opened: list[DcamAdapter] = []

    def open_(pixel_encoding: str = "Mono16", faults: str = "", **fields: Any) -> DcamAdapter:
        describe(monkeypatch, tmp_path, faults, **fields)
        adapter = DcamAdapter(library_path(), 0, pixel_encoding)
        opened.append(adapter)
        return adapter

    yield open_
    for adapter in opened:
        adapter.close()


class Expected:
    """The fake's frames of a camera: frame k from frame 0 by one addition (uint16 wraps)."""

    def __init__(self, adapter: DcamAdapter, bits: int) -> None:
        height, width = adapter.image_shape
        self.mask = (1 << bits) - 1
        self.first = expected_frame(0, height, width, PixelType.MONO16, bits=bits)

    def __call__(self, frame: int) -> npt.NDArray[np.uint16]:
        shifted: npt.NDArray[np.uint16] = self.first + np.uint16(7 * frame & self.mask)
        return shifted & np.uint16(self.mask)


def pixels(adapter: DcamAdapter, frame: CameraFrame) -> npt.NDArray[np.uint16]:
    """The frame's pixels as the receiver reads its blob."""
    shape = adapter.image_shape
    if adapter.wire_format == "mono12p":
        assert len(frame.blob) == packed_size(math.prod(shape))
        image = Image(
            seq=0,
            frame=frame.number,
            shape=shape,
            dtype=np.dtype(np.uint16),
            compression="mono12p",
            data=frame.blob,
        )
        return decode(image)
    assert adapter.wire_format == "none"
    return np.frombuffer(frame.blob, dtype=np.uint16).reshape(shape)


def same(got: npt.NDArray[np.uint16], want: npt.NDArray[np.uint16]) -> None:
    """Pixel for pixel; np.array_equal first, which is several times faster on a full frame."""
    if not np.array_equal(got, want):
        np.testing.assert_array_equal(got, want)


def take(adapter: DcamAdapter, count: int, expected: Expected) -> list[int]:
    """The numbers of the next ``count`` frames, each checked against the fake's content."""
    numbers: list[int] = []
    for _ in range(count):
        frame = adapter.next_frame(WAIT_S)
        assert frame is not None, f"no frame after {numbers}"
        same(pixels(adapter, frame), expected(frame.number))
        numbers.append(frame.number)
    return numbers


def arm(
    frames: int,
    exposure_time: float,
    frame_time: float | None = None,
    trigger: CameraTrigger = CameraTrigger.INTERNAL,
) -> CameraArm:
    return CameraArm(
        frames=frames,
        exposure_time=exposure_time,
        frame_time=exposure_time if frame_time is None else frame_time,
        trigger=trigger,
    )


def in_the_sdks_wait(thread: threading.Thread) -> None:
    """Return once ``thread`` is in the binding's wait (dcamwait_start), for a stop to end."""
    assert thread.ident is not None
    while True:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == "wait_event":
                time.sleep(0.05)  # from the Python line into the C call, which releases the GIL
                return
            frame = frame.f_back
        assert thread.is_alive()
        time.sleep(0.001)


def number_in(text: str, before: str) -> float:
    """The number in ``text`` that comes right before ``before``."""
    found = re.search(rf"([0-9.e+-]+) {re.escape(before)}", text)
    assert found is not None, text
    return float(found.group(1))


# ---- the camera --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "shape", "encodings"),
    [
        ("ORCA-Flash4.0 V3", (2048, 2048), ("Mono16", "Mono12")),
        ("ORCA-Fusion", (2304, 2304), ("Mono16", "Mono12p")),
        ("ORCA-Lightning", (2592, 4608), ("Mono16", "Mono12p")),
    ],
)
def test_what_each_model_is_and_offers(
    open_camera: OpenCamera, model: str, shape: tuple[int, int], encodings: tuple[str, ...]
) -> None:
    for encoding in encodings:
        adapter = open_camera(encoding, model=model, camera_id="S/N: 301234")
        assert adapter.sdk == "dcam"
        assert adapter.model == model
        assert adapter.serial == "301234"
        assert adapter.sensor_shape == shape
        assert adapter.image_shape == shape
        assert adapter.pixel_encoding == encoding
        assert adapter.wire_format == ("mono12p" if encoding == "Mono12p" else "none")
        assert adapter.triggers == frozenset(CameraTrigger), "the fake takes all five"
        adapter.close()


@pytest.mark.parametrize(
    ("model", "encoding", "offered"),
    [
        ("ORCA-Flash4.0 V3", "Mono12p", "Mono16, Mono12"),
        ("ORCA-Lightning", "Mono12", "Mono16, Mono12p"),
        ("ORCA-Fusion", "Mono8", "Mono16, Mono12p"),
    ],
)
def test_an_encoding_the_model_lacks_is_refused(
    open_camera: OpenCamera, model: str, encoding: str, offered: str
) -> None:
    with pytest.raises(CameraRefused) as excinfo:
        open_camera(encoding, model=model)
    assert str(excinfo.value) == (
        f"PixelEncoding {encoding!r} is not available on this {model}: it offers {offered}"
    )
    assert open_camera(model=model).model == model, "the refusal ended the DCAM session"


def test_opening_failures_name_the_library_and_the_sdk_code(
    open_camera: OpenCamera, tmp_path: Path
) -> None:
    with pytest.raises(CameraError) as excinfo:
        open_camera(faults="open_error=DCAMERR_NOCONNECTION")
    assert str(excinfo.value) == (
        f"DCAM-API {library_path()}: dcamdev_open(0): DCAMERR_NOCONNECTION (0x80000F07)"
    )
    missing = tmp_path / "libdcamapi.so"
    with pytest.raises(CameraError, match=f"cannot load {missing} as DCAM-API"):
        DcamAdapter(str(missing))
    with pytest.raises(CameraError, match=r"found 1 camera\(s\): there is no camera 1"):
        DcamAdapter(library_path(), 1)
    assert open_camera().model == "ORCA-Flash4.0 V3", "each failure ended the DCAM session"


def test_the_ring_size() -> None:
    flash = 2048 * 2048 * 2
    assert [ring_size(frames, flash) for frames in (1, 8, 50, 64, 1000)] == [8, 8, 50, 64, 64]
    assert ring_size(1000, 4608 * 2592 * 2) == 22
    assert ring_size(1000, 64 * 8 * 2) == 64
    assert ring_size(1000, 10**10) == 8


# ---- series ------------------------------------------------------------------------------


def test_an_internal_mono16_series(open_camera: OpenCamera) -> None:
    adapter = open_camera()
    expected = Expected(adapter, 16)
    np.testing.assert_array_equal(expected(49), expected_frame(49, 2048, 2048, PixelType.MONO16))
    adapter.configure(arm(50, 0.02))
    adapter.start()
    first = adapter.next_frame(WAIT_S)
    assert first is not None
    assert first.number == 0
    assert len(first.blob) == 2048 * 2048 * 2
    same(pixels(adapter, first), expected(0))
    assert take(adapter, 49, expected) == list(range(1, 50))
    assert take(adapter, 1, expected) == [50], "the capture runs on until stopped"
    same(pixels(adapter, first), expected(0))  # frame 50 refilled frame 0's buffer, not its blob
    adapter.stop()
    assert adapter.next_frame(WAIT_S) is None
    assert adapter.lost_frames == 0


def test_an_internal_mono12p_series_of_the_lightning(open_camera: OpenCamera) -> None:
    adapter = open_camera("Mono12p", model="ORCA-Lightning")
    expected = Expected(adapter, 12)
    np.testing.assert_array_equal(expected(19), expected_frame(19, 2592, 4608, PixelType.MONO12P))
    adapter.configure(arm(20, 0.08))
    adapter.start()
    assert take(adapter, 20, expected) == list(range(20))
    adapter.stop()
    assert adapter.lost_frames == 0


def test_mono12_of_the_flash_is_sent_as_uint16(open_camera: OpenCamera) -> None:
    adapter = open_camera("Mono12")
    adapter.configure(arm(3, 0.05))
    adapter.start()
    assert take(adapter, 3, Expected(adapter, 12)) == [0, 1, 2]


def test_software_triggers_one_frame_each(open_camera: OpenCamera) -> None:
    adapter = open_camera()
    expected = Expected(adapter, 16)
    adapter.configure(arm(5, 0.002, 0.02, CameraTrigger.SOFTWARE))
    adapter.start()
    assert adapter.next_frame(0.05) is None, "no trigger, no frame"
    adapter.software_trigger()
    adapter.software_trigger()
    assert take(adapter, 2, expected) == [0, 1]
    for _ in range(3):
        adapter.software_trigger()
    time.sleep(0.1)
    assert take(adapter, 3, expected) == [2, 3, 4], "frames that came during one wait, in order"
    assert adapter.next_frame(0.05) is None, "five triggers, five frames"
    adapter.stop()
    adapter.configure(arm(1, 0.002, 0.02, CameraTrigger.SOFTWARE))
    adapter.start()
    adapter.software_trigger()
    assert take(adapter, 1, expected) == [0], "a new series counts from 0"


@pytest.mark.parametrize(
    ("trigger", "exposure", "frame_time"),
    [
        (CameraTrigger.EXTERNAL, 0.002, 0.02),
        (CameraTrigger.GATE, 0.002, 0.02),
        (CameraTrigger.EXTERNAL_START, 0.02, 0.02),
    ],
)
def test_external_triggers_from_the_pulse_generator(
    open_camera: OpenCamera, trigger: CameraTrigger, exposure: float, frame_time: float
) -> None:
    delay_s = 0.05
    adapter = open_camera(
        trigger_period_ms=20.0, trigger_delay_ms=1e3 * delay_s, trigger_width_ms=2.0
    )
    adapter.configure(arm(5, exposure, frame_time, trigger))
    begun = time.monotonic()
    adapter.start()
    assert take(adapter, 5, Expected(adapter, 16)) == [0, 1, 2, 3, 4]
    assert time.monotonic() - begun >= delay_s + 4 * frame_time + FLASH_READOUT_S


def test_a_stop_ends_a_waiting_next_frame(open_camera: OpenCamera) -> None:
    adapter = open_camera()
    adapter.configure(arm(1, 0.002, 0.02, CameraTrigger.SOFTWARE))
    adapter.start()
    outcome: list[CameraFrame | None] = []
    thread = threading.Thread(target=lambda: outcome.append(adapter.next_frame(math.inf)))
    thread.start()
    in_the_sdks_wait(thread)
    adapter.stop()
    thread.join()
    assert outcome == [None]
    assert adapter.next_frame(WAIT_S) is None, "a stopped capture does not wait"
    adapter.close()
    adapter.close()
    adapter.stop()


# ---- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("exposure", [20.0, 1e-6])
def test_an_exposure_outside_the_range_is_refused(open_camera: OpenCamera, exposure: float) -> None:
    adapter = open_camera(model="ORCA-Lightning")
    with pytest.raises(CameraRefused) as excinfo:
        adapter.configure(arm(5, exposure, 30.0))
    assert str(excinfo.value) == (
        f"ExposureTime {exposure:g} s is outside the ORCA-Lightning's 1.2608e-05 .. 1 s"
    )
    with pytest.raises(CameraError, match="configure the camera for a series before starting"):
        adapter.start()


def test_a_frame_time_too_short_is_refused_with_the_cameras_interval(
    open_camera: OpenCamera,
) -> None:
    adapter = open_camera(model="ORCA-Lightning")
    with pytest.raises(CameraRefused) as excinfo:
        adapter.configure(arm(5, 0.001, 0.002))
    text = str(excinfo.value)
    assert text.startswith("FrameTime 0.002 s is shorter than the ")
    assert text.endswith(" s the ORCA-Lightning needs at 4608 x 2592 with ExposureTime 0.001 s")
    assert number_in(text, "s the ORCA-Lightning needs") == pytest.approx(
        LIGHTNING_READOUT_S, rel=1e-5
    )
    with pytest.raises(CameraRefused) as excinfo:
        adapter.configure(arm(5, 0.02, 0.01))
    assert str(excinfo.value) == "FrameTime 0.01 s is shorter than the ExposureTime 0.02 s"
    with pytest.raises(
        CameraRefused, match=re.escape("FrameTime 0.004 s is shorter than the 0.00816998 s")
    ):
        adapter.configure(arm(5, 0.001, 0.004, CameraTrigger.EXTERNAL))


def test_a_longer_frame_time_than_a_read_only_interval_is_refused_when_clocked(
    open_camera: OpenCamera,
) -> None:
    adapter = open_camera(model="ORCA-Lightning")
    with pytest.raises(CameraRefused) as excinfo:
        adapter.configure(arm(5, 0.001, 0.1))
    text = str(excinfo.value)
    assert text.startswith("FrameTime 0.1 s: in internal mode the ORCA-Lightning takes a frame ")
    assert "its INTERNAL_FRAMEINTERVAL is read-only" in text
    assert number_in(text, "s at 4608 x 2592") == pytest.approx(LIGHTNING_READOUT_S, rel=1e-5)
    adapter.configure(arm(5, 0.001, LIGHTNING_READOUT_S * 1.005))
    adapter.configure(arm(5, 0.001, 0.1, CameraTrigger.SOFTWARE))
    adapter.configure(arm(5, 0.001, 0.1, CameraTrigger.EXTERNAL))


def test_a_software_trigger_needs_the_software_mode(open_camera: OpenCamera) -> None:
    adapter = open_camera()
    with pytest.raises(CameraRefused, match="; no series is armed"):
        adapter.software_trigger()
    adapter.configure(arm(5, 0.01))
    with pytest.raises(CameraRefused, match="; a series in internal mode is armed"):
        adapter.software_trigger()


# ---- faults and lost frames --------------------------------------------------------------


def test_no_frame_after_timeout_after_is_none(open_camera: OpenCamera) -> None:
    adapter = open_camera(faults="timeout_after=3")
    adapter.configure(arm(5, 0.01))
    adapter.start()
    assert take(adapter, 3, Expected(adapter, 16)) == [0, 1, 2]
    assert adapter.next_frame(0.2) is None


def test_a_vanished_camera_is_a_camera_error(open_camera: OpenCamera) -> None:
    adapter = open_camera(faults="vanish_after=2")
    adapter.configure(arm(5, 0.002, 0.02, CameraTrigger.SOFTWARE))
    adapter.start()
    adapter.software_trigger()
    adapter.software_trigger()
    assert take(adapter, 2, Expected(adapter, 16)) == [0, 1]
    adapter.software_trigger()
    with pytest.raises(CameraError, match=r"DCAMERR_NOCAMERA \(0x80000206\)"):
        adapter.next_frame(WAIT_S)
    with pytest.raises(CameraError, match=r"dcamcap_stop: DCAMERR_NOCAMERA \(0x80000206\)"):
        adapter.stop()
    adapter.close()


def test_a_frame_the_camera_lost_leaves_a_gap(
    open_camera: OpenCamera, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = open_camera(faults="drop_frame=2")
    adapter.configure(arm(5, 0.002, 0.02, CameraTrigger.SOFTWARE))
    adapter.start()
    for _ in range(5):
        adapter.software_trigger()
    time.sleep(0.1)
    assert take(adapter, 4, Expected(adapter, 16)) == [0, 1, 3, 4]
    assert adapter.lost_frames == 1
    assert "ORCA-Flash4.0 V3 frame 2 was lost: the camera lost it" in caplog.text


def test_frames_the_ring_overwrote_leave_a_gap(
    open_camera: OpenCamera, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = open_camera()
    adapter.configure(arm(8, 0.02))
    adapter.start()
    time.sleep(0.4)
    numbers = take(adapter, 3, Expected(adapter, 16))
    first = numbers[0]
    # Frame k is read out at (k + 1) x 20 ms + the readout: 19 frames in 0.4 s.
    captured = math.floor((0.4 - 0.02 - FLASH_READOUT_S) / 0.02) + 1
    assert first >= captured - 4, "an overrun reader resumes half a ring behind the newest"
    assert numbers == [first, first + 1, first + 2]
    assert adapter.lost_frames == first
    assert f"frames 0..{first - 1} were lost: the ring of 8 buffers was overwritten" in caplog.text


# ---- Mono12p ---------------------------------------------------------------------------


def dcam_mono12p_rows(values: npt.NDArray[np.uint16], rowbytes: int) -> npt.NDArray[np.uint8]:
    """Rows packed as DCAM MONO12P (research notes 3.9), each padded to ``rowbytes``."""
    height, width = values.shape
    even = np.zeros((height, width + width % 2), dtype=np.uint32)
    even[:, :width] = values
    p0, p1 = even[:, 0::2], even[:, 1::2]
    groups = np.stack([p0 & 0xFF, (p1 & 0xF) << 4 | p0 >> 8, p1 >> 4], axis=-1)
    rows = np.zeros((height, rowbytes), dtype=np.uint8)
    used = (3 * width + 1) // 2
    rows[:, :used] = groups.reshape(height, -1)[:, :used]
    return rows


@pytest.mark.parametrize(("height", "width"), [(3, 5), (4, 7), (2, 6), (1, 1)])
def test_mono12p_rows_become_the_receivers_bitstream(height: int, width: int) -> None:
    values = np.random.default_rng(width).integers(0, 4096, (height, width), dtype=np.uint16)
    rows = dcam_mono12p_rows(values, rowbytes=(3 * width + 1) // 2 + 5)
    stream = mono12p_bitstream(rows, width)
    assert stream.flags.c_contiguous
    assert stream.size == packed_size(height * width)
    image = Image(
        seq=0,
        frame=0,
        shape=(height, width),
        dtype=np.dtype(np.uint16),
        compression="mono12p",
        data=stream.data.cast("B"),
    )
    np.testing.assert_array_equal(decode(image), values)


def test_a_subarray_is_read_and_one_off_the_cameras_step_is_refused_with_its_rule(
    open_camera: OpenCamera,
) -> None:
    adapter = open_camera(model="ORCA-Lightning")
    region = CameraArm(frames=3, exposure_time=0.001, frame_time=0.001, aoi=(256, 100, 512, 64))
    with pytest.raises(CameraRefused, match=r"AOI 512 x 64 at column 100"):
        adapter.configure(region.model_copy(update={"aoi": (100, 100, 512, 64)}))
    with pytest.raises(CameraRefused, match="does not fit the ORCA-Lightning's 4608 x 2592"):
        adapter.configure(region.model_copy(update={"aoi": (4500, 0, 256, 64)}))
    adapter.configure(region)
    assert adapter.image_shape == (64, 512)
    adapter.start()
    frame = adapter.next_frame(WAIT_S)
    assert frame is not None
    want = expected_frame(frame.number, 64, 512, PixelType.MONO16, left=256, top=100, bits=12)
    same(pixels(adapter, frame), want)
