"""The Eiger backend against the simulated Eiger's SIMPLON REST API (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devices.backend import BackendError, BackendState, create_backend
from devices.backends.eiger import EigerBackend
from devices.settings import AcquisitionSettings, TriggerMode
from sim.eiger.server import EigerSimulator
from sim.eiger.stream import RecordingSink
from tests.helpers import wait_until
from tooling.ports import free_port


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def eiger(sink: RecordingSink) -> Iterator[EigerSimulator]:
    with EigerSimulator(sink=sink, initialize_time_s=0.01) as simulator:
        yield simulator


@pytest.fixture
def backend(eiger: EigerSimulator) -> Iterator[EigerBackend]:
    made = create_backend(
        "eiger", {"DetectorAddress": eiger.url, "StreamAddress": "tcp://127.0.0.1:9999"}
    )
    assert isinstance(made, EigerBackend)
    yield made
    made.close()


def settings(
    mode: TriggerMode,
    n_triggers: int = 2,
    per_trigger: int = 3,
    exposure_time: float = 0.001,
    frame_time: float = 0.002,
    filename: str = "scan_007.h5",
) -> AcquisitionSettings:
    return AcquisitionSettings(
        exposure_time=exposure_time,
        frame_time=frame_time,
        trigger_mode=mode,
        n_triggers=n_triggers,
        frames_per_trigger=per_trigger,
        filename=filename,
    )


def done(backend: EigerBackend) -> None:
    wait_until(lambda: backend.state is not BackendState.ARMED, 10, "the series to end")
    assert backend.state is BackendState.IDLE, backend.error


def test_an_uninitialized_detector_is_initialized_on_connection(eiger: EigerSimulator) -> None:
    assert eiger.detector.state == "na"
    EigerBackend.from_options({"DetectorAddress": eiger.url, "StreamAddress": "tcp://x:1"})
    assert eiger.detector.state == "idle"


@pytest.mark.parametrize(
    ("mode", "trigger_mode", "nimages", "ntrigger"),
    [
        (TriggerMode.INTERNAL, "ints", 3, 2),
        (TriggerMode.EXTERNAL, "exts", 6, 1),
        (TriggerMode.EXTERNAL_MULTI, "exts", 3, 2),
        (TriggerMode.GATE, "exte", 1, 2),
    ],
)
def test_settings_reach_the_detector_config_and_the_header_appendix(
    backend: EigerBackend,
    eiger: EigerSimulator,
    sink: RecordingSink,
    mode: TriggerMode,
    trigger_mode: str,
    nimages: int,
    ntrigger: int,
) -> None:
    backend.arm(settings(mode, per_trigger=1 if mode is TriggerMode.GATE else 3))
    (series,) = sink.series
    config = sink.config(series)
    assert config.detector["trigger_mode"] == trigger_mode
    assert config.detector["nimages"] == (1 if mode is TriggerMode.GATE else nimages)
    assert config.detector["ntrigger"] == ntrigger
    assert config.detector["count_time"] == pytest.approx(0.001)
    assert json.loads(config.header_appendix) == {"filename": "scan_007.h5"}
    backend.stop()


def test_internal_triggers_itself_then_disarms(backend: EigerBackend, sink: RecordingSink) -> None:
    backend.arm(settings(TriggerMode.INTERNAL))
    done(backend)
    (series,) = sink.series
    assert [image.frame for image in sink.images(series)] == list(range(6))
    assert sink.ended == [series]


def test_software_mode_takes_a_burst_per_trigger(
    backend: EigerBackend, sink: RecordingSink
) -> None:
    backend.arm(settings(TriggerMode.SOFTWARE))
    (series,) = sink.series
    backend.trigger()
    wait_until(lambda: len(sink.images(series)) == 3, 5, "the first burst")
    assert backend.state is BackendState.ARMED
    backend.trigger()
    done(backend)
    assert len(sink.images(series)) == 6


def test_external_multi_waits_for_the_detectors_trigger_input(
    backend: EigerBackend, eiger: EigerSimulator, sink: RecordingSink
) -> None:
    backend.arm(settings(TriggerMode.EXTERNAL_MULTI))
    (series,) = sink.series
    for burst in (1, 2):
        eiger.detector.external_trigger()
        wait_until(lambda b=burst: len(sink.images(series)) == 3 * b, 5, f"burst {burst}")
    done(backend)
    assert sink.ended == [series]


def test_stop_disarms_mid_series(backend: EigerBackend, sink: RecordingSink) -> None:
    backend.arm(settings(TriggerMode.INTERNAL, 1, 10_000, 0.005, 0.01, "long.h5"))
    (series,) = sink.series
    wait_until(lambda: sink.images(series), 5, "the first image")
    backend.stop()
    assert backend.state is BackendState.IDLE
    assert sink.ended == [series]
    assert len(sink.images(series)) < 10_000


@pytest.mark.allow_error_log
def test_a_refused_value_names_the_parameter_and_the_detectors_reason(
    backend: EigerBackend,
) -> None:
    with pytest.raises(BackendError, match=r"the Eiger refused PUT detector/config/frame_time"):
        backend.arm(settings(TriggerMode.INTERNAL, 1, 1, 1e-6, 1e-6, "x.h5"))


def test_unreachable_detector_says_where_it_was_looked_for() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match=f"cannot reach the Eiger at http://{address}"):
        create_backend("eiger", {"DetectorAddress": address, "StreamAddress": "tcp://x:1"})


def test_missing_address_property_is_named() -> None:
    with pytest.raises(BackendError, match="eiger properties: DetectorAddress"):
        create_backend("eiger", {"StreamAddress": "tcp://x:1"})


def test_stop_while_waiting_for_software_triggers_ends_idle(
    backend: EigerBackend, sink: RecordingSink
) -> None:
    backend.arm(settings(TriggerMode.SOFTWARE))
    backend.stop()
    assert backend.state is BackendState.IDLE
    assert sink.ended == sink.series
