"""Only for the compiled part; all metadata lives in pyproject.toml."""

from setuptools import setup

setup(
    cffi_modules=[
        "protocols/_bslz4_build.py:ffibuilder",
        "receiver/_chunks_build.py:ffibuilder",
        "receiver/_zmqbatch_build.py:ffibuilder",
        "sim/lambda_fake/_fake_xsp_build.py:ffibuilder",
        "sim/andor_fake/_fake_atcore_build.py:ffibuilder",
        "sim/dcam_fake/_fake_dcam_build.py:ffibuilder",
    ]
)
