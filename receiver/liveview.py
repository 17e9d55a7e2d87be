"""Turn the latest received frame into what live-view clients ask for.

Everything here runs only when a client asks (the HTTP API, about 1 Hz), never
on the per-frame path: the workers keep frames as they came off the wire, and
the cost of decompressing, reducing and encoding is paid once per request.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import PIL.Image

from protocols import bslz4
from protocols.model import Image, StackedImage
from receiver import assembly
from receiver.stream_items import ModuleImage

CONTRAST_PERCENTILES = (0.5, 99.9)
"""Low and high percentile of the shown range: a few hot pixels cannot flatten
the picture, and the sparse bright spots of a diffraction frame stay visible."""

CONTRAST_SAMPLE = 1 << 20
"""At most this many pixels estimate the contrast range: a percentile needs no
exact answer, and a 16-Mpixel frame should not cost a full sort per refresh."""


class FrameDecodeError(ValueError):
    """The latest frame cannot be turned into pixels, so the live view cannot show it."""


def decode(image: Image) -> np.ndarray:
    """Pixels of ``image`` in its announced shape and dtype.

    The hot path never decompresses (frames go to HDF5 as received), so this is
    the one place where a live-view client pays for it. The frame of a
    multi-module detector is shown as its assembled full image.
    """
    if isinstance(image, ModuleImage):
        try:
            return assembly.assemble(image)
        except ValueError as exc:
            raise FrameDecodeError(f"frame {image.frame}: cannot assemble it: {exc}") from exc
    if image.compression == "none":
        return _from_raw(image)
    if image.compression == "bslz4":
        try:
            if isinstance(image, StackedImage):
                return np.stack(
                    [bslz4.decompress(c, image.shape[1:], image.dtype) for c in image.chunks()]
                )
            return bslz4.decompress(image.data, image.shape, image.dtype)
        except (ValueError, RuntimeError) as exc:
            raise FrameDecodeError(
                f"frame {image.frame}: its bslz4 chunk cannot be decompressed ({exc}); "
                "check the detector's stream compression settings"
            ) from exc
    raise FrameDecodeError(
        f"frame {image.frame}: compression {image.compression!r} cannot be shown; "
        "the live view decodes 'none' and 'bslz4'"
    )


def _from_raw(image: Image) -> np.ndarray:
    size = memoryview(image.data).nbytes
    if size != image.nbytes:
        raise FrameDecodeError(
            f"frame {image.frame}: {size} bytes received but shape {list(image.shape)} "
            f"of {image.dtype} needs {image.nbytes}; the stream header and data disagree"
        )
    return np.frombuffer(image.data, dtype=image.dtype).reshape(image.shape)


def downsample(array: np.ndarray, factor: int, truncate: bool = False) -> np.ndarray:
    """Reduce a frame by ``factor`` along its last two axes (its only axis if 1-D).

    Block means, not sums: the reduced frame keeps the pixel dtype and the
    scale of the counts, so a uint16 frame cannot overflow and a viewer's
    colour scale does not jump when the factor changes. A ragged edge block is
    the mean of the pixels it has (output size ceil(n / factor)), so the edge
    is not dimmer than the rest. MAX IV's receiver reduces the same way but
    truncates; integer means are rounded here so they are not biased low,
    unless ``truncate`` (MAX IV's pickled form, :func:`maxiv_parts`).
    Leading axes (a stack of modules) are kept: each module is reduced alone.
    """
    if factor < 1:
        raise ValueError(f"downsample factor must be an integer >= 1, got {factor}")
    if factor == 1 or array.size == 0:
        return array
    accumulator = _accumulator(array.dtype)
    sums = array
    counts = np.ones([1] * array.ndim)
    for axis in range(max(array.ndim - 2, 0), array.ndim):
        starts = np.arange(0, array.shape[axis], factor)
        sums = np.add.reduceat(sums, starts, axis=axis, dtype=accumulator)
        lengths = np.diff(starts, append=array.shape[axis])
        counts = counts * lengths.reshape(_along(axis, array.ndim))
    return _cast_like(sums / counts, array.dtype, truncate)


def _accumulator(dtype: np.dtype) -> np.dtype:
    """A dtype in which block sums cannot overflow or lose integer precision."""
    if dtype.kind in "bu":
        return np.dtype(np.uint64)
    if dtype.kind == "i":
        return np.dtype(np.int64)
    return np.result_type(dtype, np.float64)


def _along(axis: int, ndim: int) -> list[int]:
    """A broadcastable shape that varies along ``axis`` only."""
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def _cast_like(means: np.ndarray, dtype: np.dtype, truncate: bool = False) -> np.ndarray:
    if dtype.kind in "biu":
        rounded: np.ndarray = np.trunc(means) if truncate else np.rint(means)
        return rounded.astype(dtype)
    return means.astype(dtype)


def to_png(array: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of ``array`` that any browser shows.

    Detector counts span many decades, so the grey range is set by robust
    percentiles (CONTRAST_PERCENTILES) instead of min/max. Pixels at the
    integer type's maximum (Eiger's marker for module gaps and dead pixels)
    and non-finite values are left out of the range and drawn black, or the
    gaps would set the top of the scale and the frame would look empty.
    """
    pixels = _as_2d(array)
    valid = _valid_pixels(pixels)
    low, high = _contrast_range(pixels[valid])
    scaled = (pixels.astype(np.float32) - low) * np.float32(255 / (high - low))
    np.clip(scaled, 0, 255, out=scaled)
    scaled[~valid] = 0
    buffer = io.BytesIO()
    PIL.Image.fromarray(scaled.astype(np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _as_2d(array: np.ndarray) -> np.ndarray:
    """A 2-D view for a picture: a stack of modules is shown one below the other."""
    if array.ndim == 2:
        return array
    if array.ndim < 2:
        return array.reshape(1, -1)
    return array.reshape(-1, array.shape[-1])


def _valid_pixels(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype.kind in "iu":
        below_max: np.ndarray = pixels != np.iinfo(pixels.dtype).max
        return below_max
    if pixels.dtype.kind == "f":
        finite: np.ndarray = np.isfinite(pixels)
        return finite
    return np.ones(pixels.shape, dtype=bool)


def _contrast_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) of the grey scale, never empty so the scaling cannot divide by zero."""
    if values.size == 0:
        return 0.0, 1.0
    sample = values[:: max(1, values.size // CONTRAST_SAMPLE)].astype(np.float64)
    low, high = (float(v) for v in np.percentile(sample, CONTRAST_PERCENTILES))
    return low, max(high, low + 1.0)


def frame_header(image: Image, array: np.ndarray) -> dict[str, Any]:
    """The STINS image header of ``array``, the decoded (maybe reduced) form of ``image``.

    The wire fields are kept so clients still see exposure time and the like;
    shape, type and compression are replaced to describe the bytes actually sent.
    """
    return {
        **image.fields,
        "htype": "image",
        "frame": image.frame,
        "shape": list(array.shape),
        "type": array.dtype.name,
        "compression": "none",
    }


def to_raw(array: np.ndarray, image: Image) -> tuple[dict[str, Any], bytes]:
    """The header and C-order pixel bytes of ``array``: the safe default payload.

    Any language can read it with the header alone (shape, type), unlike pickle.
    """
    return frame_header(image, array), np.ascontiguousarray(array).tobytes()


MAXIV_REDUCED = np.dtype(np.uint16)
"""The one pixel type MAX IV's receiver downsamples in ``/last_frame`` (uncompressed only)."""


def to_pickle(image: Image, factor: int) -> bytes:
    """MAX IV's ``/last_frame`` payload: ``pickle.dumps([header, blob, ...])``.

    Only for MAX IV's existing clients, which unpickle the response; pickle is
    never a format to offer anyone else. What is pickled: :func:`maxiv_parts`.
    """
    return pickle.dumps(maxiv_parts(image, factor))


def maxiv_parts(image: Image, factor: int) -> list[Any]:
    """The latest frame as MAX IV's receiver keeps it: its STINS header, then its blobs as received.

    MAX IV's clients read the header's ``shape``, ``type`` and
    ``compression`` and decode the blob themselves (``bitshuffle.decompress_lz4``
    for ``bslz4``, which takes the chunk with its 12-byte header), so
    nothing is decoded here: a bslz4 frame stays the chunk it came as
    (checked when it was parsed, so it is a whole chunk). As at MAX IV:

    - STINS: the image header as received (shape, type and compression as
      the transforms left them), one blob;
    - Dectris stream v1, v2 and others: the header MAX IV's receiver makes
      (``htype``, ``msg_number``, ``frame``, ``shape``, ``type``,
      ``compression``); several v2 thresholds are ``shape`` [K, H, W] with
      ``chunks`` [1, H, W] and one blob per threshold;
    - a multi-module detector: the first module's header with ``shape``
      [K, H, W], ``chunks`` [1, H, W] and the modules' ``x``, ``y``,
      ``rotation`` (degrees) and ``full_shape``, one blob per module; a
      module that sent nothing gets a plane of the fill value;
    - downsampled (``factor`` > 1, truncated means) only for a single
      uncompressed uint16 frame: MAX IV reduces no other.
    """
    if isinstance(image, ModuleImage):
        return _maxiv_modules(image)
    header = _maxiv_header(image)
    if isinstance(image, StackedImage):
        header["chunks"] = [1, *image.shape[1:]]
        return [header, *(bytes(chunk) for chunk in image.chunks())]
    if (
        factor > 1
        and image.compression == "none"
        and image.dtype == MAXIV_REDUCED
        and len(image.shape) == 2
    ):
        reduced = downsample(_from_raw(image), factor, truncate=True)
        header["shape"] = list(reduced.shape)
        return [header, np.ascontiguousarray(reduced).tobytes()]
    return [header, bytes(image.data)]


def _maxiv_header(image: Image) -> dict[str, Any]:
    """A STINS stream's image header as received; for other streams MAX IV's conversion."""
    received = image.fields
    if received.get("htype") == "image":
        header = dict(received)
    else:
        header = {"htype": "image", "msg_number": image.seq}
    header.update(
        frame=image.frame,
        shape=list(image.shape),
        type=_type_name(image.dtype, received.get("type")),
        compression=image.compression,
    )
    return header


def _type_name(dtype: np.dtype, received: Any) -> str:
    """The ``type`` a client passes to numpy: as received when it still says ``dtype``."""
    if isinstance(received, str):
        try:
            if np.dtype(received) == dtype:
                return received
        except TypeError:
            pass
    return dtype.name if dtype.isnative or dtype.itemsize == 1 else dtype.str


def _maxiv_modules(image: ModuleImage) -> list[Any]:
    """MAX IV's merged Lambda message: the modules' blobs and where each one goes."""
    layout = image.layout
    if layout is None:
        raise FrameDecodeError(f"frame {image.frame} carries no module layout")
    plane = image.shape[1:]
    header = _maxiv_header(image)
    header.update(
        chunks=[1, *plane],
        x=[p.x for p in layout.modules],
        y=[p.y for p in layout.modules],
        rotation=[p.rotation % 4 * 90 for p in layout.modules],
        full_shape=list(layout.full_shape),
    )
    blobs: list[bytes] = []
    for chunk in image.chunks():
        if chunk is None:
            blobs.append(_fill_plane(image, plane))
        else:
            blobs.append(bytes(chunk))
    return [header, *blobs]


def _fill_plane(image: ModuleImage, plane: tuple[int, ...]) -> bytes:
    """The plane of a module that sent nothing for this frame: the fill value, encoded."""
    if image.layout is None or image.compression not in ("none", "bslz4"):
        raise FrameDecodeError(
            f"frame {image.frame}: a module that sent nothing cannot be filled in "
            f"compression {image.compression!r}"
        )
    try:
        fill = assembly.fill_of(image.layout, image.dtype)
    except ValueError as exc:
        raise FrameDecodeError(f"frame {image.frame}: {exc}") from exc
    pixels = np.full(plane, fill, dtype=image.dtype)
    return bslz4.compress(pixels) if image.compression == "bslz4" else pixels.tobytes()
