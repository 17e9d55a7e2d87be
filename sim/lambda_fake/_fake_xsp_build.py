"""cffi build script of ``sim.lambda_fake._fake_xsp``: the fake Lambda SDK compiled as a library.

Nothing calls this module through its Python side: the Lambda binding
(``streamers.lambda_sdk.binding``) loads the compiled file by path in ABI
mode, exactly as it loads a site's shim over libxsp, and
``sim.lambda_fake.library_path()`` finds it. It is a cffi module only so
that the project's build compiles ``fake_xsp.c`` with the system compiler
and installs the result next to the package, as it does the other C parts.
The one declaration below is all cffi needs to make a valid module; the
``lsdk_*`` functions are exported from the library by ``fake_xsp.c`` itself.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef("const char *lsdk_version(void);")
# The C file is included rather than listed in ``sources``: cffi compiles in a directory of
# its own when given one (``compile(tmpdir=...)``), where a relative source path is not
# found, and setuptools wants relative ones. The header it includes is found from it.
ffibuilder.set_source(
    "sim.lambda_fake._fake_xsp",
    '#include "fake_xsp.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
