"""A multi-module detector (XSpectrum Lambda: one STINS stream per module) into one receiver.

The receiver runs in-process, fed over real ZeroMQ on 127.0.0.1; what is
checked is what a user sees: the file (read back with h5py + hdf5plugin),
the live view, the forwarded stream and the status. Expected images are
computed here from the synthetic full frame, independently of the
generator's and the receiver's placement code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import numpy as np
import pytest
import zmq

from protocols import bslz4, module_stack, stins
from protocols.errors import MalformedMessage
from protocols.model import (
    Image,
    ModuleLayout,
    ModulePlacement,
    SeriesEnd,
    SeriesStart,
    StackedImage,
)
from receiver import liveview
from receiver.config import ConfigError, load
from receiver.receiver import Receiver
from receiver.stream_items import ModuleImage, ModuleParts
from sim.frames import synthetic_frame
from sim.generator import GeneratorSettings
from sim.geometry import Geometry, windmill
from sim.module_streams import ModuleStreams
from tests.helpers import wait_until
from tests.receiver_support import InProcessReceivers
from tests.receiver_support import series_closed as finished

pytestmark = pytest.mark.timeout(60)

MODULE = (6, 10)
"""A module's frame: not square, so a transposed placement cannot pass."""
GEOMETRY = windmill(MODULE)
FULL = GEOMETRY.full_shape
DETECTOR = "entry/instrument/detector"
FILL = np.iinfo(np.uint16).max
GAP_TIMEOUT = 0.4


def placed(place: Any) -> tuple[int, int]:
    rows, columns = MODULE
    return (rows, columns) if place.rotation % 2 == 0 else (columns, rows)


def expected_full(frame: int, dtype: str = "uint16") -> np.ndarray:
    """The synthetic full frame, with the fill value where no module covers it."""
    full = synthetic_frame(frame, FULL, dtype)
    covered = np.zeros(FULL, dtype=bool)
    for place in GEOMETRY.modules:
        rows, columns = placed(place)
        covered[place.y : place.y + rows, place.x : place.x + columns] = True
    return np.where(covered, full, np.iinfo(dtype).max)


def expected_module(frame: int, index: int, dtype: str = "uint16") -> np.ndarray:
    """Module ``index``'s frame: its region of the full frame, turned back."""
    place = GEOMETRY.modules[index]
    rows, columns = placed(place)
    region = synthetic_frame(frame, FULL, dtype)[
        place.y : place.y + rows, place.x : place.x + columns
    ]
    return np.rot90(region, -place.rotation)


def from_file(path: Path, frame_index: int) -> np.ndarray:
    """The full image as a reader of the file assembles it, from the file alone."""
    with h5py.File(path) as f:
        detector = f[DETECTOR]
        data = detector["data"]
        full = np.full(detector["full_image_shape"][()], data.fillvalue, dtype=data.dtype)
        for group in detector.values():
            if group.attrs.get("NX_class") != "NXdetector_module":
                continue
            plane = data[frame_index, group["data_origin"][0]]
            turned = np.rot90(plane, group["full_image_rotation"][()])
            row, column = group["full_image_origin"][()]
            full[row : row + turned.shape[0], column : column + turned.shape[1]] = turned
        return full


class Modules:
    """The module streams of a detector, driven message by message (a PUSH socket each)."""

    def __init__(self, context: zmq.Context, geometry: Geometry = GEOMETRY) -> None:
        self.geometry = geometry
        self.sockets: dict[str, zmq.Socket] = {}
        self.numbers: dict[str, int] = {}
        for place in geometry.modules:
            socket = context.socket(zmq.PUSH)
            socket.linger = 0
            socket.bind("tcp://127.0.0.1:*")
            self.sockets[place.name] = socket
            self.numbers[place.name] = 0

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: s.last_endpoint.decode() for name, s in self.sockets.items()}

    def send(self, name: str, parts: list) -> None:
        self.sockets[name].send_multipart(parts)
        self.numbers[name] += 1

    def header(self, name: str, filename: str, meta: dict | None = None) -> None:
        self.send(name, stins.encode_header(self.numbers[name], filename, meta))

    def image(
        self,
        name: str,
        frame: int,
        compression: str = "none",
        pixels: np.ndarray | None = None,
    ) -> None:
        index = self.geometry.names().index(name)
        if pixels is None:
            pixels = np.ascontiguousarray(expected_module(frame, index))
        blob = bslz4.compress(pixels) if compression == "bslz4" else pixels.tobytes()
        self.send(
            name,
            stins.encode_image(
                self.numbers[name], frame, blob, pixels.shape, pixels.dtype, compression
            ),
        )

    def end(self, name: str) -> None:
        self.send(name, stins.encode_series_end(self.numbers[name]))

    def close(self, name: str) -> None:
        """The module's streamer dies: its socket goes away mid-series."""
        self.sockets.pop(name).close(linger=0)

    def close_all(self) -> None:
        for socket in self.sockets.values():
            socket.close(linger=0)


def module_settings(endpoints: dict[str, str], geometry: Geometry = GEOMETRY) -> dict[str, Any]:
    return {
        "modules": [
            {
                "name": m.name,
                "connect": endpoints[m.name],
                "x": m.x,
                "y": m.y,
                "rotation": m.rotation,
            }
            for m in geometry.modules
        ],
        "full_shape": list(geometry.full_shape),
    }


@pytest.fixture
def modules(context: zmq.Context) -> Iterator[Modules]:
    streams = Modules(context)
    yield streams
    streams.close_all()


@pytest.fixture
def start_receiver(receivers: InProcessReceivers) -> Callable[..., Receiver]:
    def start(endpoints: dict[str, str], **overrides: object) -> Receiver:
        settings = {**module_settings(endpoints), "gap_timeout": GAP_TIMEOUT, **overrides}
        return receivers.start(**settings)

    return start


def forward_consumer(context: zmq.Context, receiver: Receiver) -> zmq.Socket:
    consumer = context.socket(zmq.PULL)
    consumer.rcvtimeo = 10_000
    consumer.connect(receiver.forward_endpoint)
    # The forwarder sends only once it has seen a consumer connect.
    wait_until(lambda: receiver._forwarder.connected, 5, "the forwarder to see its consumer")
    return consumer


def plane_image(stack: StackedImage, chunk: memoryview) -> Image:
    """One plane of a forwarded stack as an image of its own."""
    return Image(
        seq=stack.seq,
        frame=stack.frame,
        shape=stack.shape[1:],
        dtype=stack.dtype,
        compression=stack.compression,
        data=chunk,
    )


def pixels_of(image: Image) -> np.ndarray:
    if image.compression == "bslz4":
        return bslz4.decompress(image.data, image.shape, image.dtype)
    return np.frombuffer(image.data, image.dtype).reshape(image.shape)


FRAMES = 12


def check_forwarded(messages: list[Any], compression: str, forward_modules: str) -> None:
    """The forwarded series: every frame, assembled or as the stack of its modules."""
    assert isinstance(messages[0], SeriesStart)
    assert messages[0].filename == "lambda/scan.h5"
    images = [m for m in messages if isinstance(m, Image)]
    assert sorted(m.frame for m in images) == list(range(FRAMES))
    for image in images:
        assert image.compression == compression
        if forward_modules == "assembled":
            assert image.shape == FULL
            np.testing.assert_array_equal(pixels_of(image), expected_full(image.frame))
        else:
            assert isinstance(image, StackedImage)
            assert image.shape == (4, *MODULE)
            planes = [pixels_of(plane_image(image, chunk)) for chunk in image.chunks()]
            for index, plane in enumerate(planes):
                np.testing.assert_array_equal(plane, expected_module(image.frame, index))
            layout = module_stack.layout_from_meta(messages[0].meta)
            assert [p.name for p in layout.planes] == GEOMETRY.names()
            full = module_stack.assemble_image(image, layout)
            np.testing.assert_array_equal(full, expected_full(image.frame))
    assert isinstance(messages[-1], SeriesEnd)


@pytest.mark.parametrize("forward_modules", ["stacked", "assembled"])
@pytest.mark.parametrize("compression", ["none", "bslz4"])
@pytest.mark.parametrize("workers", [1, 3])
def test_four_modules_are_stored_losslessly_and_served_assembled(
    start_receiver, context, tmp_path, compression, workers, forward_modules
):
    settings = GeneratorSettings(
        endpoint="tcp://127.0.0.1:*",
        modules=4,
        shape=MODULE,
        frames=FRAMES,
        compression=compression,
        filename="lambda/scan.h5",
        meta={"count_time": 0.01, "sensor": "CdTe"},
        timeout_s=10,
    )
    with ModuleStreams(settings) as generator:
        receiver = start_receiver(
            generator.endpoints,
            workers=workers,
            forward="tcp://127.0.0.1:*",
            forward_modules=forward_modules,
        )
        consumer = forward_consumer(context, receiver)
        generator.send_series()
        messages = [stins.parse(consumer.recv_multipart()) for _ in range(FRAMES + 2)]
        consumer.close()
        status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    assert status["frames_written"] == FRAMES
    assert [m["frames_received"] for m in status["modules"]] == [FRAMES] * 4
    path = tmp_path / "lambda/scan.h5"
    with h5py.File(path) as f:
        detector = f[DETECTOR]
        data = detector["data"]
        assert data.shape == (FRAMES, 4, *MODULE)
        assert data.chunks == (1, 1, *MODULE)
        if compression == "bslz4":
            assert data.id.get_create_plist().get_filter(0)[0] == bslz4.HDF5_FILTER_ID
        for frame in range(FRAMES):
            for index in range(4):
                np.testing.assert_array_equal(data[frame, index], expected_module(frame, index))
        assert list(detector["sequence_number"]) == list(range(FRAMES))
        np.testing.assert_array_equal(
            detector["module_sequence_number"][()], np.repeat(np.arange(FRAMES), 4).reshape(-1, 4)
        )
        assert list(detector["full_image_shape"]) == list(FULL)
        assert detector["count_time"][()] == 0.01
        for index, place in enumerate(GEOMETRY.modules):
            group = detector[place.name]
            assert group.attrs["NX_class"] == "NXdetector_module"
            assert list(group["data_origin"]) == [index, 0, 0]
            assert list(group["data_size"]) == [1, *MODULE]
            assert list(group["full_image_origin"]) == [place.y, place.x]
            assert group["full_image_rotation"][()] == place.rotation
            assert group["stream"][()].decode() == generator.endpoints[place.name]
        assert f["entry/data/data"].shape == data.shape
    np.testing.assert_array_equal(from_file(path, 5), expected_full(5))

    last = receiver.last_frame()
    assert isinstance(last, ModuleImage)
    np.testing.assert_array_equal(liveview.decode(last), expected_full(last.frame))

    check_forwarded(messages, compression, forward_modules)


def test_modules_in_different_orders_through_several_workers_still_match(
    start_receiver, modules, context, tmp_path
):
    receiver = start_receiver(modules.endpoints, workers=4, forward="tcp://127.0.0.1:*")
    consumer = forward_consumer(context, receiver)
    orders = {
        name: np.random.default_rng(seed).permutation(30).tolist()
        for seed, name in enumerate(GEOMETRY.names())
    }
    for name in GEOMETRY.names():
        modules.header(name, "shuffled.h5")
    for position in range(30):
        for name in GEOMETRY.names():
            modules.image(name, orders[name][position], "bslz4")
    for name in GEOMETRY.names():
        modules.end(name)
    forwarded = [stins.parse(consumer.recv_multipart()) for _ in range(32)]
    consumer.close()

    status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "shuffled.h5") as f:
        data = f[f"{DETECTOR}/data"]
        assert data.shape == (30, 4, *MODULE)
        for frame in (0, 17, 29):
            for index in range(4):
                np.testing.assert_array_equal(data[frame, index], expected_module(frame, index))
        assert (f[f"{DETECTOR}/module_sequence_number"][()] >= 0).all()
    layout = module_stack.layout_from_meta(forwarded[0].meta)
    for image in forwarded[1:-1]:
        full = module_stack.assemble_image(image, layout)
        np.testing.assert_array_equal(full, expected_full(image.frame))


@pytest.mark.allow_error_log
def test_a_module_that_dies_mid_series_is_named_and_the_others_are_kept(
    start_receiver, modules, tmp_path
):
    endpoint = modules.endpoints["m2"]
    receiver = start_receiver(modules.endpoints, workers=2)
    for name in GEOMETRY.names():
        modules.header(name, "dead.h5")
    for frame in range(20):
        for name in GEOMETRY.names():
            if name != "m2" or frame < 7:
                modules.image(name, frame)
        if frame == 6:
            wait_until(lambda: receiver.received_frames == 7, 10, "frames 0..6 of all modules")
            modules.close("m2")
    for name in ("m0", "m1", "m3"):
        modules.end(name)

    status = finished(receiver)

    assert status["state"] == "error"
    assert status["error"].startswith(
        f"module 'm2' ({endpoint}) sent nothing for frame 7 after {GAP_TIMEOUT:g} s"
    )
    assert (
        "the modules disagree on the number of frames: 'm0' 20, 'm1' 20, 'm2' 7"
        in (status["error"])
    )
    m2 = status["modules"][2]
    assert (m2["state"], m2["frames_missing"], m2["first_missing"]) == ("silent", 13, 7)
    assert status["frames_written"] == 20
    with h5py.File(tmp_path / "dead.h5") as f:
        data = f[f"{DETECTOR}/data"]
        assert data.shape == (20, 4, *MODULE)
        numbers = f[f"{DETECTOR}/module_sequence_number"][()]
        assert list(numbers[:, 2]) == list(range(7)) + [-1] * 13
        assert (numbers[:, [0, 1, 3]] == np.arange(20)[:, None]).all()
        for frame in (6, 7, 19):
            for index in (0, 1, 3):
                np.testing.assert_array_equal(data[frame, index], expected_module(frame, index))
        np.testing.assert_array_equal(data[6, 2], expected_module(6, 2))
        assert (data[7:, 2] == FILL).all()
    assembled = liveview.decode(receiver.last_frame())
    expected = expected_full(19)
    place = GEOMETRY.modules[2]
    rows, columns = placed(place)
    expected[place.y : place.y + rows, place.x : place.x + columns] = FILL
    np.testing.assert_array_equal(assembled, expected)


@pytest.mark.allow_error_log
@pytest.mark.parametrize(
    ("odd_pixels", "expected"),
    [
        (
            lambda frame: np.zeros((6, 12), np.uint16),
            "module 'm1' ({endpoint}) sends 6x12 uint16 none frames but the series started "
            "with 6x10 uint16 none; its frames are not stored",
        ),
        (
            lambda frame: expected_module(frame, 1).astype(np.uint32),
            "module 'm1' ({endpoint}) sends 6x10 uint32 none frames",
        ),
    ],
    ids=["shape", "dtype"],
)
def test_a_module_with_other_frames_is_named_and_the_others_are_kept(
    start_receiver, modules, tmp_path, odd_pixels, expected
):
    receiver = start_receiver(modules.endpoints)
    for name in GEOMETRY.names():
        modules.header(name, "odd.h5")
    for frame in range(5):
        for name in GEOMETRY.names():
            pixels = np.ascontiguousarray(odd_pixels(frame)) if name == "m1" else None
            modules.image(name, frame, pixels=pixels)
    for name in GEOMETRY.names():
        modules.end(name)

    status = finished(receiver)

    assert status["state"] == "error"
    assert expected.format(endpoint=modules.endpoints["m1"]) in status["error"]
    assert (
        "module 'm1'" in status["error"]
        and "is missing from 5 of the 5 frames" in (status["error"])
    )
    with h5py.File(tmp_path / "odd.h5") as f:
        data = f[f"{DETECTOR}/data"]
        assert data.shape == (5, 4, *MODULE)
        assert (data[:, 1] == FILL).all()
        np.testing.assert_array_equal(data[4, 3], expected_module(4, 3))
        assert list(f[f"{DETECTOR}/module_sequence_number"][:, 1]) == [-1] * 5


@pytest.mark.allow_error_log
def test_a_module_naming_another_file_is_left_out_and_named(start_receiver, modules, tmp_path):
    receiver = start_receiver(modules.endpoints)
    for name in GEOMETRY.names():
        modules.header(name, "other.h5" if name == "m3" else "named.h5")
    for frame in range(3):
        for name in GEOMETRY.names():
            modules.image(name, frame)
    for name in GEOMETRY.names():
        modules.end(name)

    status = finished(receiver)

    assert status["state"] == "error"
    assert (
        f"module 'm3' ({modules.endpoints['m3']}) names the file 'other.h5' but the other "
        "modules 'named.h5'; its frames are not stored" in status["error"]
    )
    assert not (tmp_path / "other.h5").exists()
    with h5py.File(tmp_path / "named.h5") as f:
        assert list(f[f"{DETECTOR}/module_sequence_number"][:, 3]) == [-1] * 3
        np.testing.assert_array_equal(f[f"{DETECTOR}/data"][2, 0], expected_module(2, 0))


@pytest.mark.allow_error_log
def test_a_module_that_ends_early_is_named_without_waiting(start_receiver, modules, tmp_path):
    receiver = start_receiver(modules.endpoints, gap_timeout=30)
    for name in GEOMETRY.names():
        modules.header(name, "short.h5")
    for frame in range(8):
        for name in GEOMETRY.names():
            if name != "m0" or frame < 5:
                modules.image(name, frame)
    for name in GEOMETRY.names():
        modules.end(name)

    status = finished(receiver)

    assert "the modules disagree on the number of frames: 'm0' 5, 'm1' 8" in status["error"]
    assert (
        "module 'm0'" in status["error"]
        and "is missing from 3 of the 8 frames" in (status["error"])
    )
    with h5py.File(tmp_path / "short.h5") as f:
        assert f[f"{DETECTOR}/data"].shape == (8, 4, *MODULE)


@pytest.mark.allow_error_log
def test_a_header_placing_a_module_elsewhere_than_the_configuration_is_reported(
    start_receiver, modules, tmp_path
):
    receiver = start_receiver(modules.endpoints)
    for place in GEOMETRY.modules:
        x = place.x + 1 if place.name == "m1" else place.x
        meta = {"x": x, "y": place.y, "rotation": place.rotation * 90, "full_shape": list(FULL)}
        modules.header(place.name, "placed.h5", meta)
    for name in GEOMETRY.names():
        modules.image(name, 0)
        modules.end(name)

    status = finished(receiver)

    assert (
        f"module 'm1' ({modules.endpoints['m1']}) places itself at x 11 in its header but the "
        "configuration at x 10; the configuration's placement is stored and used"
    ) == status["error"]
    with h5py.File(tmp_path / "placed.h5") as f:
        assert list(f[f"{DETECTOR}/m1/full_image_origin"]) == [0, 10]
        assert "x" not in f[DETECTOR]


def test_a_module_whose_series_end_was_lost_does_not_spoil_the_next_series(
    start_receiver, modules, tmp_path
):
    receiver = start_receiver(modules.endpoints)
    for name in GEOMETRY.names():
        modules.header(name, "first.h5")
        modules.image(name, 0)
    for name in ("m0", "m1", "m2"):
        modules.end(name)
    for name in GEOMETRY.names():
        modules.header(name, "second.h5")
        for frame in range(3):
            modules.image(name, frame)
        modules.end(name)

    status = finished(receiver, 2)

    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "first.h5") as f:
        assert f[f"{DETECTOR}/data"].shape == (1, 4, *MODULE)
    with h5py.File(tmp_path / "second.h5") as f:
        assert (f[f"{DETECTOR}/module_sequence_number"][()] == np.arange(3)[:, None]).all()


# The pieces on their own.


def test_assembly_turns_and_places_each_module_and_fills_the_gaps():
    """Two 2x3 modules; m1 turned a quarter counter-clockwise and placed right of m0."""
    m0 = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint16)
    m1 = np.array([[7, 8, 9], [10, 11, 12]], dtype=np.uint16)
    layout = ModuleLayout(
        modules=(
            ModulePlacement("m0", "tcp://a:1", x=0, y=1, rotation=0),
            ModulePlacement("m1", "tcp://a:2", x=4, y=0, rotation=1),
        ),
        full_shape=(3, 6),
        fill_value=0,
    )

    def frame(chunks: tuple) -> ModuleImage:
        return ModuleImage(
            seq=1,
            frame=0,
            shape=(2, 2, 3),
            dtype=np.dtype(np.uint16),
            compression="bslz4",
            data=ModuleParts(chunks),
            layout=layout,
        )

    full = liveview.decode(frame((bslz4.compress(m0), bslz4.compress(m1))))

    np.testing.assert_array_equal(
        full,
        [
            [0, 0, 0, 0, 9, 12],
            [1, 2, 3, 0, 8, 11],
            [4, 5, 6, 0, 7, 10],
        ],
    )
    without_m0 = liveview.decode(frame((None, bslz4.compress(m1))))
    assert (without_m0[1:, :3] == 0).all()


def test_a_module_image_announced_as_its_plane_of_the_stack_is_read_as_the_module_frame():
    pixels = np.arange(60, dtype=np.uint16).reshape(6, 10)
    stacked = stins.encode_image(
        3, 2, pixels.tobytes(), [4, 6, 10], "uint16", chunks=[1, 6, 10], exposure_time=0.1
    )
    plain = stins.encode_image(3, 2, pixels.tobytes(), [6, 10], "uint16")

    for parts in (stacked, plain):
        image = stins.parse_module(parts)
        assert (image.seq, image.frame, image.shape) == (3, 2, (6, 10))
        assert "chunks" not in image.fields
    assert stins.parse_module(stacked).fields["exposure_time"] == 0.1
    with pytest.raises(MalformedMessage, match=r"chunks \[1, H, W\]") as caught:
        stins.parse_module(
            stins.encode_image(3, 2, pixels.tobytes(), [4, 6, 10], "uint16", chunks=[2, 6, 10])
        )
    assert caught.value.seq == 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("no full_shape", "modules need full_shape"),
        ("sls", "modules are read as STINS streams"),
        ("connect", "leave connect out"),
        ("twice", "module name 'm0' is used twice"),
        ("reserved", "module name 'data' is used by the file itself"),
        ("outside", r"starts at x=99, y=0, outside full_shape \[16, 16\]"),
    ],
)
def test_a_wrong_module_configuration_is_refused_with_the_reason(tmp_path, change, expected):
    modules: list[dict[str, Any]] = [
        {"name": "m0", "connect": "tcp://127.0.0.1:9010", "x": 0, "y": 0},
        {"name": "m1", "connect": "tcp://127.0.0.1:9011", "x": 8, "y": 0, "rotation": 1},
    ]
    settings: dict[str, Any] = {
        "modules": modules,
        "full_shape": [16, 16],
        "data_root": str(tmp_path),
    }
    match change:
        case "no full_shape":
            del settings["full_shape"]
        case "sls":
            settings["protocol"] = "sls"
        case "connect":
            settings["connect"] = ["tcp://127.0.0.1:1"]
        case "twice":
            modules[1]["name"] = "m0"
        case "reserved":
            modules[1]["name"] = "data"
        case "outside":
            modules[1]["x"] = 99

    with pytest.raises(ConfigError, match=expected):
        load(overrides=settings)
