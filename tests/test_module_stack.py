"""A forwarded multi-module stack: parsed as one image of planes, assembled from its header."""

from __future__ import annotations

import numpy as np
import pytest

from protocols import bslz4, module_stack, stins
from protocols.errors import MalformedMessage
from protocols.model import StackedImage

PLANE = (3, 5)
LAYOUT = {
    "full_shape": [8, 5],
    "fill_value": "max",
    "modules": [
        {"name": "m0", "x": 0, "y": 0, "rotation": 0},
        {"name": "m1", "x": 0, "y": 4, "rotation": 180},
    ],
}


def _planes() -> list[np.ndarray]:
    return [np.arange(15, dtype=np.uint16).reshape(PLANE) + 100 * k for k in range(2)]


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_a_stack_is_parsed_plane_by_plane_and_assembled_as_its_header_says(compression):
    planes = _planes()
    blobs = [bslz4.compress(p) if compression == "bslz4" else p.tobytes() for p in planes]
    parts = stins.encode_image(
        7, 3, blobs[0], [2, *PLANE], "uint16", compression, chunks=[1, *PLANE]
    )
    image = stins.parse([*parts, blobs[1]])
    assert isinstance(image, StackedImage)
    assert image.shape == (2, *PLANE)
    assert [bytes(c) for c in image.chunks()] == [bytes(b) for b in blobs]
    full = module_stack.assemble_image(
        image, module_stack.layout_from_meta({"module_layout": LAYOUT})
    )
    expected = np.full((8, 5), np.iinfo(np.uint16).max, np.uint16)
    expected[0:3] = planes[0]
    expected[4:7] = np.rot90(planes[1], 2)
    np.testing.assert_array_equal(full, expected)


def test_a_plane_of_the_wrong_size_is_refused_naming_it():
    planes = _planes()
    parts = stins.encode_image(
        0, 0, planes[0].tobytes(), [2, *PLANE], "uint16", "none", chunks=[1, *PLANE]
    )
    with pytest.raises(MalformedMessage, match=r"needs 30 \(plane 1 of the stack\)"):
        stins.parse([*parts, planes[1].tobytes()[:-2]])


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {"module_layout": {"full_shape": [8, 5]}},
        {"module_layout": {**LAYOUT, "fill_value": "x"}},
    ],
)
def test_a_header_without_a_usable_layout_says_what_is_missing(meta):
    with pytest.raises(MalformedMessage, match="module_layout"):
        module_stack.layout_from_meta(meta)
