"""Per-frame transforms that the receiver's workers apply to each parsed image.

A pipeline is configured as data, a list applied in order, for example::

    [{"kind": "cbf"},
     {"kind": "tot", "table": "/data/calibration/tot_to_energy.npz"},
     {"kind": "rotate", "k": -1},
     {"kind": "mask", "x": 700, "y": 800, "width": 60, "height": 60, "value": "max"}]

``TransformList`` validates it (use it as a field type in a configuration
model) and ``build_pipeline`` turns it into one callable ``Image -> Image``
that a worker calls on every image. ``cbf`` and ``mono12p`` read the frame's
wire format, so they come first; they choose the output's compression. Any
other pipeline keeps the input's ('none' or 'bslz4').
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    NonNegativeInt,
    PositiveInt,
    StrictFloat,
    StrictInt,
    TypeAdapter,
)

from protocols.model import Buffer, Image, Message
from receiver.transforms import cbf, mask, mono12p, mono12packed, rotate, tot
from receiver.transforms.pipeline import Decoder, Pipeline, Step

Transform = Callable[[Image], Image]
Parser = Callable[[Sequence[Buffer]], Message]

STRICT = ConfigDict(extra="forbid", frozen=True)


class Rotate(BaseModel):
    """``{"kind": "rotate", "k": 1}``: ``k`` quarter turns counter-clockwise, as numpy.rot90."""

    model_config = STRICT
    kind: Literal["rotate"]
    k: StrictInt = Field(description="quarter turns counter-clockwise; negative turns clockwise")

    def step(self) -> Step:
        return functools.partial(rotate.rotate, k=self.k)


class Tot(BaseModel):
    """``{"kind": "tot", "table": "/path/tot.npz"}``: ToT counts to float32 energies (see tot.py)."""

    model_config = STRICT
    kind: Literal["tot"]
    table: FilePath = Field(
        description="tensor (ny, nx, n_tot) in a .npy, or a .npz under 'tot_to_energy_tensor'"
    )

    def step(self) -> Step:
        return tot.TotToEnergy(tot.load_table(self.table))


class Mask(BaseModel):
    """``{"kind": "mask", "x": 0, "y": 0, "width": 10, "height": 5, "value": 0}``."""

    model_config = STRICT
    kind: Literal["mask"]
    x: NonNegativeInt = Field(description="first column")
    y: NonNegativeInt = Field(description="first row")
    width: PositiveInt
    height: PositiveInt
    value: StrictInt | StrictFloat | Literal["max"] = Field(
        0, description="the masked pixels' value; 'max': the largest value of the frame's type"
    )

    def step(self) -> Step:
        return functools.partial(
            mask.mask, x=self.x, y=self.y, width=self.width, height=self.height, value=self.value
        )


class _Decoding(BaseModel):
    """A transform that reads a wire format the rest of the receiver does not."""

    model_config = STRICT
    compression: Literal["bslz4", "none"] = Field(
        "bslz4", description="compression of the decoded frame"
    )


class Cbf(_Decoding):
    """``{"kind": "cbf"}``: a Pilatus mini-CBF file blob (compression 'cbf') to int32."""

    kind: Literal["cbf"]


class Mono12p(_Decoding):
    """``{"kind": "mono12p"}``: 12-bit packed pixels (compression 'mono12p') to uint16."""

    kind: Literal["mono12p"]


class Mono12Packed(_Decoding):
    """``{"kind": "mono12packed"}``: Andor's 12-bit packing (compression 'mono12packed')
    to uint16."""

    kind: Literal["mono12packed"]


DECODERS: dict[str, Decoder] = {
    "cbf": cbf.decode,
    "mono12p": mono12p.decode,
    "mono12packed": mono12packed.decode,
}

TransformConfig = Annotated[
    Rotate | Tot | Mask | Cbf | Mono12p | Mono12Packed, Field(discriminator="kind")
]


def _decoding_first(configs: list[TransformConfig]) -> list[TransformConfig]:
    for position, config in enumerate(configs[1:], start=1):
        if isinstance(config, _Decoding):
            raise ValueError(
                f"transform {position + 1} ({config.kind!r}) reads the frame as it comes"
                " off the wire, so it can only be the first"
            )
    return configs


TransformList = Annotated[list[TransformConfig], AfterValidator(_decoding_first)]
_TRANSFORM_LIST: TypeAdapter[list[TransformConfig]] = TypeAdapter(TransformList)


def build_pipeline(configs: Sequence[TransformConfig | Mapping[str, Any]]) -> Transform:
    """One callable applying ``configs`` in order to an image.

    Raises pydantic's ValidationError for an invalid list and ValueError for an
    unusable ToT table, so a bad configuration fails when the receiver starts,
    not on the first frame. The callable raises ``MalformedMessage`` (with the
    frame's ``seq``) for a frame it cannot transform.
    """
    validated = _TRANSFORM_LIST.validate_python(list(configs))
    if not validated:
        return _unchanged
    first, *rest = validated
    if isinstance(first, _Decoding):
        return Pipeline(_steps(rest), DECODERS[first.kind], first.compression)
    return Pipeline(_steps(validated))


def _steps(configs: Sequence[TransformConfig]) -> list[Step]:
    """The frame steps of ``configs``, where validation left no decoding (it comes first)."""
    steps = []
    for config in configs:
        if isinstance(config, _Decoding):
            raise ValueError(f"transform {config.kind!r} can only be the first")
        steps.append(config.step())
    return steps


def _unchanged(image: Image) -> Image:
    return image


def with_transforms(parse: Parser, transform: Transform) -> Parser:
    """``parse`` followed by ``transform`` on every image, so both run in the parallel workers."""
    if transform is _unchanged:
        return parse

    def parse_and_transform(parts: Sequence[Buffer]) -> Message:
        message = parse(parts)
        return transform(message) if isinstance(message, Image) else message

    return parse_and_transform
