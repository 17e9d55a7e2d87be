"""The rotation a Dectris header asks for, applied per series in the workers."""

from __future__ import annotations

import threading
import time

import numpy as np

from protocols import bslz4
from protocols.model import Image, SeriesStart
from receiver.series_rotation import SeriesRotation

PIXELS = np.arange(12, dtype=np.uint32).reshape(3, 4)


def image(series: object, frame: int = 0) -> Image:
    chunk = bslz4.compress(PIXELS)
    return Image(frame + 1, frame, (3, 4), np.dtype("uint32"), "bslz4", chunk, series=series)


def header(series: object, turns: int) -> SeriesStart:
    return SeriesStart(0, "x.h5", fields={"rotate": turns}, series=series)


def parsed(rotation: SeriesRotation, message: object) -> object:
    return rotation.wrap(lambda parts: parts[0])([message])


def pixels_of(message: Image) -> np.ndarray:
    return bslz4.decompress(message.data, message.shape, message.dtype)


def test_frames_are_turned_as_their_own_series_header_says() -> None:
    rotation = SeriesRotation(wait_s=1)
    parsed(rotation, header(14, 1))
    parsed(rotation, header(15, 0))
    turned = parsed(rotation, image(14))
    assert turned.shape == (4, 3)
    np.testing.assert_array_equal(pixels_of(turned), np.rot90(PIXELS, 1))
    assert parsed(rotation, image(15)).shape == (3, 4)


def test_a_frame_parsed_before_its_header_waits_for_it() -> None:
    rotation = SeriesRotation(wait_s=5)
    result: list[Image] = []
    worker = threading.Thread(target=lambda: result.append(parsed(rotation, image(7))))
    worker.start()
    time.sleep(0.1)
    parsed(rotation, header(7, 2))
    worker.join()
    np.testing.assert_array_equal(pixels_of(result[0]), np.rot90(PIXELS, 2))


def test_without_a_header_the_frame_goes_on_unrotated_after_the_wait(caplog) -> None:
    rotation = SeriesRotation(wait_s=0.05)
    assert parsed(rotation, image(99)).shape == (3, 4)
    assert "no header of series 99 within 0.05 s" in caplog.text


def test_stins_frames_have_no_series_and_pass_untouched() -> None:
    rotation = SeriesRotation(wait_s=0.05)
    frame = image(None)
    assert parsed(rotation, frame) is frame
