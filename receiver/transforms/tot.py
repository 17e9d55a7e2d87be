"""Time-over-threshold to energy (FemtoMAX Pilatus in ToT mode), one lookup per pixel.

The calibration is a tensor ``table[y, x, tot]`` of shape ``(ny, nx, n_tot)``:
the energy that pixel (y, x) reports for a ToT count of ``tot``. That is MAX
IV's streaming-receiver layout, and a ``.npz`` file holding it under their key
``tot_to_energy_tensor`` (or a plain ``.npy``) is read as is, so existing
calibration files keep working. It is held as float32, the output type.

A ToT outside ``1 .. n_tot - 1`` has no energy and gives ``NO_ENERGY`` (-1.0),
as in MAX IV's receiver, instead of an error or a clipped value: 0 means no
hit, and the Pilatus marks gaps (-1) and bad pixels (-2) in every frame, so an
error would reject every frame and clipping would invent energies. A ToT beyond
the calibrated range is likewise marked rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protocols.errors import MalformedMessage

NPZ_KEY = "tot_to_energy_tensor"
NO_ENERGY = -1.0


def load_table(path: Path) -> np.ndarray:
    """Read a calibration tensor from ``.npy`` or ``.npz``; raise ValueError if it is unusable."""
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if NPZ_KEY not in loaded:
            raise ValueError(f"{path} has no array {NPZ_KEY!r} (it has {sorted(loaded)})")
        table: np.ndarray = loaded[NPZ_KEY]
        return table


class TotToEnergy:
    """Look up the energy of each pixel's ToT count; built once, called per frame."""

    def __init__(self, table: np.ndarray) -> None:
        if table.ndim != 3 or table.shape[2] < 2:
            raise ValueError(
                f"a ToT table has shape (ny, nx, n_tot) with n_tot >= 2, got {table.shape}"
            )
        self.shape = table.shape[:2]
        self.n_tot = table.shape[2]
        # Index 0 (no hit) never has an energy, so it holds NO_ENERGY and every
        # ToT without one is sent there: one gather, no masking afterwards.
        self._table = np.array(table, dtype=np.float32, order="C")
        self._table[..., 0] = NO_ENERGY
        self._flat = self._table.reshape(-1)
        self._rows = np.arange(self.shape[0] * self.shape[1], dtype=np.intp) * self.n_tot

    def __call__(self, tot: np.ndarray) -> np.ndarray:
        """float32 energies of a 2-D integer ToT frame."""
        if tot.dtype.kind not in "iu":
            raise MalformedMessage(f"tot: ToT frames hold integers, this one holds {tot.dtype}")
        if tot.shape != self.shape:
            raise MalformedMessage(
                f"tot: the frame is {list(tot.shape)} pixels"
                f" but the calibration table is for {list(self.shape)}"
            )
        counts = tot.reshape(-1)
        valid = (counts > 0) & (counts < self.n_tot)
        index = np.where(valid, counts, 0).astype(np.intp, copy=False)
        index += self._rows
        return self._flat.take(index).reshape(self.shape)
