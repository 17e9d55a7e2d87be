"""cffi build script of ``sim.dcam_fake._fake_dcam``: the fake DCAM-API compiled as a library.

Nothing calls this module through its Python side: the DCAM binding
(``streamers.dcam_sdk.binding``) loads the compiled file by path in ABI mode,
exactly as it loads Hamamatsu's libdcamapi.so at a site, and
``sim.dcam_fake.library_path()`` finds it. It is a cffi module only so that
the project's build compiles ``fake_dcam.c`` with the system compiler and
installs the result next to the package, as it does the other C parts. The
one declaration below is all cffi needs to make a valid module; the
``dcam*`` functions are exported from the library by ``fake_dcam.c`` itself.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef("int32_t dcamapi_uninit(void);")
# The C file is included rather than listed in ``sources``: cffi compiles in a directory of
# its own when given one (``compile(tmpdir=...)``), where a relative source path is not
# found, and setuptools wants relative ones. The header it includes is found from it.
ffibuilder.set_source(
    "sim.dcam_fake._fake_dcam",
    '#include "fake_dcam.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
