"""A simulated Dectris Pilatus3 camserver: its TCP protocol and the CBF files it writes.

``python -m sim.pilatus --help`` runs one as a process on 127.0.0.1.
"""

from sim.pilatus.camserver import PILATUS3_2M_SHAPE, CamserverError, CamserverSimulator
from sim.pilatus.ramdisk import RamDisk, RamDiskFull

__all__ = [
    "PILATUS3_2M_SHAPE",
    "CamserverError",
    "CamserverSimulator",
    "RamDisk",
    "RamDiskFull",
]
