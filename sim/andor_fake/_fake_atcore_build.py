"""cffi build script of ``sim.andor_fake._fake_atcore``: the fake Andor SDK3 as a library.

Nothing calls the SDK through this module's Python side: the Andor binding
(``streamers.andor_sdk.binding``) loads the compiled file by path in ABI
mode, exactly as it loads Andor's libatcore.so at a site, and
``sim.andor_fake.library_path()`` finds it. It is a cffi module only so that
the project's build compiles ``fake_atcore.c`` with the system compiler and
installs the result next to the package, as it does the other C parts. The
one declaration below, the fake's own reason for its last failure, is all
cffi needs to make a valid module; the ``AT_*`` functions are exported from
the library by ``fake_atcore.c`` itself.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef("const char *fake_atcore_last_error(void);")
# The C file is included rather than listed in ``sources``: cffi compiles in a directory of
# its own when given one (``compile(tmpdir=...)``), where a relative source path is not
# found, and setuptools wants relative ones. The header it includes is found from it.
ffibuilder.set_source(
    "sim.andor_fake._fake_atcore",
    '#include "fake_atcore.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
