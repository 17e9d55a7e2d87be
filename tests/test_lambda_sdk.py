"""The Lambda SDK's C API through its binding, against the compiled fake (no mocks).

Every call of lambda_sdk.h is exercised: opening from a system file, the
module information, settings and their refusals, series in the three
trigger modes, stop, buffers, the fake's faults and its content formula.
Times are only ever checked from below (a frame cannot come before it is
due), never from above, so a loaded machine cannot make a test fail.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from sim.geometry import windmill
from sim.lambda_fake import ModuleLine, SystemFile, expected_frame, library_path, windmill_systems
from streamers.lambda_sdk.binding import (
    ErrorCode,
    Frame,
    FrameStatus,
    LambdaSdkError,
    LambdaSystem,
    LibraryNotFound,
    ModuleInfo,
    SystemInfo,
    TriggerMode,
    ffi,
)

SHAPE = (8, 1536)
"""Small modules, wide enough that m*1021 + r*3 + c passes 4095 and the 12-bit mask bites."""
SHUTTER_S = 0.0005
"""The 12-bit minimum (2000 Hz): series are short."""
WAIT_S = 10.0
"""A timeout for frames that do come; generous, since a test never waits it out."""


@pytest.fixture(scope="module")
def library() -> str:
    return library_path()


def system_file(tmp_path: Path, second: bool = False, **settings: Any) -> Path:
    """One of the windmill's two systems (m0, m1 or, with second, m2, m3) written to tmp_path."""
    files = windmill_systems(SHAPE, **settings)
    name = "dcu2.system" if second else "dcu1.system"
    return files[second].write(tmp_path / name)


def raw_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hand.system"
    path.write_text(text)
    return path


@pytest.fixture
def system(library: str, tmp_path: Path) -> Iterator[LambdaSystem]:
    with LambdaSystem(library, system_file(tmp_path)) as opened:
        yield opened


def start(system: LambdaSystem, frames: int, shutter_s: float = SHUTTER_S) -> None:
    system.set_frame_count(frames)
    system.set_shutter_time(shutter_s)
    system.start()


def read_all(system: LambdaSystem, module: int, timeout_s: float = 0.2) -> list[Frame]:
    """Every frame the module delivers until a timeout, each released (pixels copied)."""
    frames = []
    while (frame := system.next_frame(module, timeout_s)) is not None:
        frames.append(Frame(frame.number, frame.status, frame.pixels.copy(), _raw=None))
        system.release(module, frame)
    return frames


def sdk_error(excinfo: pytest.ExceptionInfo[LambdaSdkError], call: str, code: ErrorCode) -> str:
    assert excinfo.value.call == call
    assert excinfo.value.code == code
    assert str(excinfo.value) == f"{call}: {excinfo.value.text}"
    return excinfo.value.text


# ---- the header and the reference ---------------------------------------------------


def test_the_python_enums_are_the_headers(library: str) -> None:
    lib = ffi.dlopen(library)
    for member in ErrorCode:
        name = "LSDK_OK" if member is ErrorCode.OK else f"LSDK_ERR_{member.name}"
        assert getattr(lib, name) == member
    for trigger in TriggerMode:
        assert getattr(lib, f"LSDK_TRIGGER_{trigger.name}") == trigger
    for status in FrameStatus:
        assert getattr(lib, f"LSDK_FRAME_{status.name}") == status


def test_expected_frame_is_the_formula() -> None:
    frame = expected_frame(3, 600, 4, 1536)
    assert frame.dtype == np.uint16
    assert frame.shape == (4, 1536)
    assert frame[2, 1000] == (600 * 7 + 3 * 1021 + 2 * 3 + 1000) & 0xFFF
    wide = expected_frame(3, 600, 4, 1536, depth=24)
    assert wide.dtype == np.uint32
    assert wide[2, 1000] == 600 * 7 + 3 * 1021 + 2 * 3 + 1000
    with pytest.raises(ValueError, match="supports 12 and 24"):
        expected_frame(0, 0, 4, 4, depth=6)


# ---- opening and information --------------------------------------------------------


def test_system_and_module_information_come_from_the_system_file(
    library: str, tmp_path: Path
) -> None:
    geometry = windmill(SHAPE)
    for second in (False, True):
        with LambdaSystem(library, system_file(tmp_path, second=second)) as system:
            assert system.version == "fake-xsp 1.0 (detector-daq sim)"
            assert system.info == SystemInfo(
                id="formax-lambda", module_count=2, detector_modules=4, full_shape=(1544, 1544)
            )
            first = 2 if second else 0
            assert system.modules == [
                ModuleInfo(
                    id=place.name,
                    index=first + k,
                    shape=SHAPE,
                    depth=12,
                    dtype="uint16",
                    x=place.x,
                    y=place.y,
                    rotation=place.rotation,
                )
                for k, place in enumerate(geometry.modules[first : first + 2])
            ]


def test_defaults_of_a_minimal_system_file(library: str, tmp_path: Path) -> None:
    path = raw_file(tmp_path, "# only a module\n\nmodule = solo 0 0 0 1\n")
    with LambdaSystem(library, path) as system:
        assert system.info == SystemInfo(
            id="hand", module_count=1, detector_modules=1, full_shape=(1536, 512)
        )
        assert system.modules[0].shape == (512, 1536)
        assert system.modules[0].depth == 12
        with pytest.raises(LambdaSdkError, match=r"minimum of 0\.5 ms for 12-bit mode"):
            system.set_shutter_time(0.0004)


def test_depth_24_frames_are_uint32_and_slower(library: str, tmp_path: Path) -> None:
    with LambdaSystem(library, system_file(tmp_path, depth=24)) as system:
        assert [m.dtype for m in system.modules] == ["uint32", "uint32"]
        with pytest.raises(LambdaSdkError) as excinfo:
            system.set_shutter_time(SHUTTER_S)
        text = sdk_error(excinfo, "lsdk_set_shutter_time", ErrorCode.ARGUMENT)
        assert text == "shutter time 0.5 ms is below the minimum of 1 ms for 24-bit mode"


# ---- frames -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [12, 24])
def test_frames_are_the_expected_content_for_two_modules(
    library: str, tmp_path: Path, depth: int
) -> None:
    frames = 6
    with LambdaSystem(library, system_file(tmp_path, second=True, depth=depth)) as system:
        start(system, frames, shutter_s=0.001)
        for module, info in enumerate(system.modules):
            numbers = []
            for _ in range(frames):
                frame = system.next_frame(module, WAIT_S)
                assert frame is not None
                numbers.append(frame.number)
                assert frame.status is FrameStatus.OK
                assert not frame.pixels.flags.writeable
                np.testing.assert_array_equal(
                    frame.pixels, expected_frame(info.index, frame.number, *SHAPE, depth=depth)
                )
                system.release(module, frame)
            assert numbers == list(range(frames))


def test_a_series_is_numbered_from_0_and_not_busy_after_its_last_frame(
    system: LambdaSystem,
) -> None:
    assert not system.busy()
    start(system, 20)
    assert system.busy()
    assert [f.number for f in read_all(system, 1)] == list(range(20))
    assert not system.busy()
    assert [f.number for f in read_all(system, 0)] == list(range(20))
    assert system.next_frame(0, WAIT_S) is None, "the series is over: no wait"


def test_a_new_start_numbers_from_0_again(system: LambdaSystem) -> None:
    start(system, 3)
    assert [f.number for f in read_all(system, 0)] == [0, 1, 2]
    system.start()
    assert [f.number for f in read_all(system, 0)] == [0, 1, 2]


def test_internal_frames_come_no_earlier_than_the_shutter_times(system: LambdaSystem) -> None:
    frames, shutter = 20, 0.002
    begun = time.monotonic()
    start(system, frames, shutter_s=shutter)
    arrivals = []
    for _ in range(frames):
        frame = system.next_frame(0, WAIT_S)
        assert frame is not None
        arrivals.append(time.monotonic() - begun)
        system.release(0, frame)
    for k, arrival in enumerate(arrivals):
        assert arrival >= (k + 1) * shutter - 1e-4, f"frame {k} came before it was due"


@pytest.mark.parametrize(
    ("mode", "last_due_s"),
    [
        (TriggerMode.EXT_SEQUENCE, 0.005 + 5 * 0.001),
        (TriggerMode.EXT_FRAMES, 0.005 + 4 * 0.003 + 0.001),
    ],
)
def test_external_triggers_deliver_every_frame(
    library: str, tmp_path: Path, mode: TriggerMode, last_due_s: float
) -> None:
    path = system_file(tmp_path, trigger_delay_ms=5.0, trigger_period_ms=3.0)
    with LambdaSystem(library, path) as system:
        system.set_trigger_mode(mode)
        begun = time.monotonic()
        start(system, 5, shutter_s=0.001)
        assert [f.number for f in read_all(system, 0, timeout_s=WAIT_S)] == [0, 1, 2, 3, 4]
        assert time.monotonic() - begun >= last_due_s - 1e-4
        assert [f.number for f in read_all(system, 1, timeout_s=WAIT_S)] == [0, 1, 2, 3, 4]
        assert not system.busy()


def test_modules_are_read_by_their_own_threads_at_once(system: LambdaSystem) -> None:
    frames = 200
    start(system, frames)
    results: dict[int, list[int]] = {}
    wrong: dict[int, list[int]] = {0: [], 1: []}

    def reader(module: int) -> None:
        index = system.modules[module].index
        numbers = []
        for frame in read_all(system, module, timeout_s=WAIT_S):
            if not np.array_equal(frame.pixels, expected_frame(index, frame.number, *SHAPE)):
                wrong[module].append(frame.number)
            numbers.append(frame.number)
        results[module] = numbers

    threads = [threading.Thread(target=reader, args=(module,)) for module in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: list(range(frames)), 1: list(range(frames))}
    assert wrong == {0: [], 1: []}, "frames whose pixels are not the expected ones"


# ---- stop ---------------------------------------------------------------------------


@pytest.mark.timeout(15)
def test_stop_ends_a_long_series_and_next_frame_then_returns_none(system: LambdaSystem) -> None:
    """A fake that waited out the timeouts after the stop would be cut off by pytest-timeout."""
    frames = 1_000_000
    start(system, frames)
    first = system.next_frame(0, WAIT_S)
    assert first is not None
    system.release(0, first)
    system.stop()
    assert not system.busy()
    # Frames due before the stop still come; then None at once, though the timeout is long.
    rest = read_all(system, 0, timeout_s=WAIT_S)
    assert len(rest) < frames - 1
    assert [f.number for f in rest] == list(range(1, len(rest) + 1))
    assert system.next_frame(0, WAIT_S) is None
    assert len(read_all(system, 1, timeout_s=WAIT_S)) < frames


def test_next_frame_releases_the_gil(library: str, tmp_path: Path) -> None:
    """A reader waits for a frame due in 3 s; stop comes from this thread meanwhile and wakes it.

    If the wait held the GIL, this thread could not call stop before the
    frame was due, and the reader would get the frame instead of None.
    """
    path = system_file(tmp_path, trigger_delay_ms=3000.0)
    with LambdaSystem(library, path) as system:
        system.set_trigger_mode(TriggerMode.EXT_SEQUENCE)
        start(system, 1, shutter_s=0.001)
        got: list[Frame | None] = []
        waiting = threading.Event()

        def reader() -> None:
            waiting.set()
            got.append(system.next_frame(0, 6.0))

        thread = threading.Thread(target=reader)
        thread.start()
        waiting.wait()
        time.sleep(0.05)
        system.stop()
        thread.join()
        assert got == [None]


# ---- faults -------------------------------------------------------------------------


def test_lost_missing_and_corrupt_frames(library: str, tmp_path: Path) -> None:
    path = system_file(
        tmp_path, lose_frame=[(0, 2)], missing_frame=[(0, 3)], corrupt_frame=[(1, 1)]
    )
    with LambdaSystem(library, path) as system:
        start(system, 5)
        m0 = read_all(system, 0)
        assert [(f.number, f.status) for f in m0] == [
            (0, FrameStatus.OK),
            (1, FrameStatus.OK),
            (3, FrameStatus.MISSING),
            (4, FrameStatus.OK),
        ]
        m1 = read_all(system, 1)
        assert [f.status for f in m1] == [FrameStatus.OK, FrameStatus.CORRUPT] + [
            FrameStatus.OK
        ] * 3
        np.testing.assert_array_equal(m1[1].pixels, expected_frame(1, 1, *SHAPE))


def test_faults_of_another_systems_modules_are_ignored(library: str, tmp_path: Path) -> None:
    with LambdaSystem(library, system_file(tmp_path, lose_frame=[(2, 1), (3, 1)])) as system:
        start(system, 3)
        assert [f.number for f in read_all(system, 0)] == [0, 1, 2]


def test_a_stalled_module_times_out_while_the_other_delivers(library: str, tmp_path: Path) -> None:
    with LambdaSystem(library, system_file(tmp_path, stall_module=[(1, 2)])) as system:
        start(system, 10)
        assert [f.number for f in read_all(system, 0, timeout_s=WAIT_S)] == list(range(10))
        first = system.next_frame(1, WAIT_S)
        second = system.next_frame(1, WAIT_S)
        assert first is not None
        assert second is not None
        assert [first.number, second.number] == [0, 1]
        system.release(1, first)
        system.release(1, second)
        begun = time.monotonic()
        assert system.next_frame(1, 0.05) is None
        assert time.monotonic() - begun >= 0.05 - 1e-3, "a stalled module waits out the timeout"
        system.stop()
        assert system.next_frame(1, WAIT_S) is None


def test_open_error_from_the_file(library: str, tmp_path: Path) -> None:
    reason = "module m1 (10.0.0.2:4321) does not answer: connection refused"
    with pytest.raises(LambdaSdkError) as excinfo:
        LambdaSystem(library, system_file(tmp_path, open_error=reason))
    assert sdk_error(excinfo, "lsdk_open", ErrorCode.HARDWARE) == reason


def test_faults_from_the_environment(
    library: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = system_file(tmp_path, lose_frame=[(0, 1)])
    monkeypatch.setenv("LAMBDA_FAKE_FAULTS", "lose_frame=0:3 ; corrupt_frame=0:0,1:2")
    with LambdaSystem(library, path) as system:
        start(system, 5)
        m0 = read_all(system, 0)
        assert [f.number for f in m0] == [0, 2, 4], "the file's and the variable's faults add up"
        assert m0[0].status is FrameStatus.CORRUPT
        assert [f.status for f in read_all(system, 1)][2] is FrameStatus.CORRUPT
    reason = "DCU 2: module m3 is not connected"
    monkeypatch.setenv("LAMBDA_FAKE_FAULTS", f"open_error={reason}")
    with pytest.raises(LambdaSdkError) as excinfo:
        LambdaSystem(library, path)
    assert sdk_error(excinfo, "lsdk_open", ErrorCode.HARDWARE) == reason
    monkeypatch.setenv("LAMBDA_FAKE_FAULTS", "drop_frame=0:1")
    with pytest.raises(LambdaSdkError) as excinfo:
        LambdaSystem(library, path)
    text = sdk_error(excinfo, "lsdk_open", ErrorCode.RESOURCE)
    assert text == "LAMBDA_FAKE_FAULTS: unknown key 'drop_frame'"


# ---- refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "reason"),
    [
        (0.0002, "shutter time 0.2 ms is below the minimum of 0.5 ms for 12-bit mode"),
        (0.0, "shutter time 0 ms: must be a positive time"),
        (-1.0, "shutter time -1000 ms: must be a positive time"),
    ],
)
def test_bad_shutter_times(system: LambdaSystem, seconds: float, reason: str) -> None:
    with pytest.raises(LambdaSdkError) as excinfo:
        system.set_shutter_time(seconds)
    assert sdk_error(excinfo, "lsdk_set_shutter_time", ErrorCode.ARGUMENT) == reason
    system.set_shutter_time(SHUTTER_S)


def test_bad_frame_count_and_trigger_mode(system: LambdaSystem) -> None:
    with pytest.raises(LambdaSdkError) as excinfo:
        system.set_frame_count(0)
    assert "at least 1 frame" in sdk_error(excinfo, "lsdk_set_frame_count", ErrorCode.ARGUMENT)
    with pytest.raises(LambdaSdkError) as excinfo:
        system.set_trigger_mode(cast(TriggerMode, 7))
    text = sdk_error(excinfo, "lsdk_set_trigger_mode", ErrorCode.ARGUMENT)
    assert text.startswith("trigger mode 7 is not one of 0 (software)")


def test_settings_and_start_are_refused_while_busy(system: LambdaSystem) -> None:
    start(system, 1_000_000)
    refusals = [
        (lambda: system.set_frame_count(5), "lsdk_set_frame_count"),
        (lambda: system.set_shutter_time(0.001), "lsdk_set_shutter_time"),
        (lambda: system.set_trigger_mode(TriggerMode.EXT_FRAMES), "lsdk_set_trigger_mode"),
        (system.start, "lsdk_start"),
    ]
    for refused, call in refusals:
        with pytest.raises(LambdaSdkError) as excinfo:
            refused()
        assert "stop first" in sdk_error(excinfo, call, ErrorCode.STATE)
    system.stop()
    system.set_frame_count(5)


def test_next_frame_before_start_and_of_an_unknown_module(system: LambdaSystem) -> None:
    with pytest.raises(LambdaSdkError) as excinfo:
        system.next_frame(0, 0.01)
    assert sdk_error(excinfo, "lsdk_next_frame", ErrorCode.STATE) == (
        "module m0: no acquisition was started"
    )
    start(system, 1)
    with pytest.raises(LambdaSdkError) as excinfo:
        system.next_frame(2, 0.01)
    text = sdk_error(excinfo, "lsdk_next_frame", ErrorCode.ARGUMENT)
    assert text == "module 2: this system serves modules 0 to 1"


def test_held_buffers_run_out_and_come_back(library: str, tmp_path: Path) -> None:
    with LambdaSystem(library, system_file(tmp_path, buffers=3)) as system:
        start(system, 5)
        held = [system.next_frame(0, WAIT_S) for _ in range(3)]
        with pytest.raises(LambdaSdkError) as excinfo:
            system.next_frame(0, WAIT_S)
        text = sdk_error(excinfo, "lsdk_next_frame", ErrorCode.STATE)
        assert text == "all 3 frame buffers of module m0 are held: release frames"
        other = system.next_frame(1, WAIT_S)
        assert other is not None, "each module has its own buffers"
        first = held[0]
        assert first is not None
        system.release(0, first)
        again = system.next_frame(0, WAIT_S)
        assert again is not None
        assert again.number == 3


def test_a_frame_released_twice_or_by_another_module(system: LambdaSystem) -> None:
    start(system, 2)
    frame = system.next_frame(0, WAIT_S)
    assert frame is not None
    with pytest.raises(LambdaSdkError) as excinfo:
        system.release(1, frame)
    text = sdk_error(excinfo, "lsdk_release_frame", ErrorCode.ARGUMENT)
    assert text == "frame 0 is not held by module m1: released already or never delivered by it"
    system.release(0, frame)
    with pytest.raises(LambdaSdkError) as excinfo:
        system.release(0, frame)
    assert "not held by module m0" in sdk_error(excinfo, "lsdk_release_frame", ErrorCode.ARGUMENT)


@pytest.mark.parametrize(
    ("text", "code", "reason"),
    [
        (
            "system_id = x\n# a comment\nframe_rate = 10\nmodule = a 0 0 0 0\n",
            ErrorCode.RESOURCE,
            "{path} line 3: unknown key 'frame_rate'",
        ),
        (
            "module = a 0 0 0 0\nbuffers = many\n",
            ErrorCode.RESOURCE,
            "{path} line 2: bad value 'many' of key 'buffers'",
        ),
        ("module = a 0 0 0\n", ErrorCode.RESOURCE, "{path} line 1: bad value 'a 0 0 0' of key"),
        ("system_id = x\n", ErrorCode.RESOURCE, "{path}: no 'module = <id>"),
        ("just words\n", ErrorCode.RESOURCE, "{path} line 1: expected 'key = value'"),
        (
            "depth = 6\nmodule = a 0 0 0 0\n",
            ErrorCode.ARGUMENT,
            "{path} line 1: depth 6: the fake Lambda supports 12 and 24",
        ),
        (
            "module = a 0 0 0 0\nlose_frame = 0:1,2\n",
            ErrorCode.RESOURCE,
            "{path} line 2: bad value '2' of key 'lose_frame'",
        ),
        (
            "detector_modules = 2\nmodule = a 0 0 0 0\nmodule = b 2 0 600 0\n",
            ErrorCode.RESOURCE,
            "{path}: module 'b' has index 2, but the detector has 2 modules",
        ),
    ],
)
def test_bad_system_files(
    library: str, tmp_path: Path, text: str, code: ErrorCode, reason: str
) -> None:
    path = raw_file(tmp_path, text)
    with pytest.raises(LambdaSdkError) as excinfo:
        LambdaSystem(library, path)
    assert sdk_error(excinfo, "lsdk_open", code).startswith(reason.format(path=path))


def test_a_missing_system_file(library: str, tmp_path: Path) -> None:
    with pytest.raises(LambdaSdkError) as excinfo:
        LambdaSystem(library, tmp_path / "absent.system")
    text = sdk_error(excinfo, "lsdk_open", ErrorCode.RESOURCE)
    assert (
        text
        == f"cannot open the system file {tmp_path / 'absent.system'}: No such file or directory"
    )


def test_a_missing_or_wrong_library_is_named(tmp_path: Path) -> None:
    config = system_file(tmp_path)
    missing = tmp_path / "liblsdk.so"
    with pytest.raises(LibraryNotFound) as excinfo:
        LambdaSystem(missing, config)
    assert str(excinfo.value) == (
        f"dlopen: cannot load {missing} as the Lambda SDK shim (--library, the library that "
        "implements streamers/lambda_sdk/lambda_sdk.h): no such file"
    )
    assert isinstance(excinfo.value, LambdaSdkError)
    not_a_library = raw_file(tmp_path, "not ELF\n")
    with pytest.raises(LibraryNotFound, match=f"cannot load {not_a_library} as the Lambda SDK"):
        LambdaSystem(not_a_library, config)
    other = importlib.util.find_spec("receiver._chunks")
    assert other is not None
    assert other.origin is not None
    with pytest.raises(LibraryNotFound, match="it has no function lsdk_"):
        LambdaSystem(other.origin, config)


def test_close_is_idempotent_and_a_closed_system_refuses_calls(
    library: str, tmp_path: Path
) -> None:
    system = LambdaSystem(library, system_file(tmp_path))
    system.close()
    system.close()
    with pytest.raises(LambdaSdkError) as excinfo:
        system.start()
    assert sdk_error(excinfo, "lsdk_start", ErrorCode.STATE) == "the Lambda system is closed"


def test_last_error_is_per_thread(library: str, system: LambdaSystem) -> None:
    lib = ffi.dlopen(library)
    with pytest.raises(LambdaSdkError):
        system.set_frame_count(0)
    assert ffi.string(lib.lsdk_last_error()).startswith(b"frame count 0")
    seen: list[bytes] = []
    thread = threading.Thread(target=lambda: seen.append(ffi.string(lib.lsdk_last_error())))
    thread.start()
    thread.join()
    assert seen == [b""]


# ---- the system file model ----------------------------------------------------------


def test_windmill_systems_split_the_windmill_between_two_dcus() -> None:
    first, second = windmill_systems((512, 1536), buffers=16)
    assert [m.index for m in first.modules] == [0, 1]
    assert [m.index for m in second.modules] == [2, 3]
    assert (first.full_height, first.full_width) == windmill((512, 1536)).full_shape
    assert first.buffers == second.buffers == 16
    assert "module = m3 3 0 512 3\n" in second.render()


def test_the_model_refuses_what_the_fake_would() -> None:
    with pytest.raises(ValueError, match="module ids must differ"):
        SystemFile(
            system_id="x",
            modules=[ModuleLine(id="a", index=0, x=0, y=0), ModuleLine(id="a", index=1, x=0, y=0)],
        )
    with pytest.raises(ValueError, match="beyond detector_modules"):
        SystemFile(
            system_id="x", detector_modules=1, modules=[ModuleLine(id="a", index=1, x=0, y=0)]
        )
