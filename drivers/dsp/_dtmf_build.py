"""Builds ``drivers.dsp._dtmf_c``, the DTMF detector in C (``drivers/dsp/c/``), with cffi in API mode.

Run at install time by ``setup.py`` (``pip install -e .``); by hand, from the repository root:
``python drivers/dsp/_dtmf_build.py`` builds it in place.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"

ffibuilder = FFI()
# the header is the interface: its declarations and size constants, without the include guard
ffibuilder.cdef("\n".join(line for line in (C_DIR / "dtmf_detect.h").read_text().splitlines()
                          if not line.startswith("#") or line.startswith(("#define BN_DTMF_WINDOW", "#define BN_DTMF_HOP"))))
ffibuilder.set_source(
    "drivers.dsp._dtmf_c",
    '#include "dtmf_detect.h"',
    sources=["drivers/dsp/c/dtmf_detect.c"],  # relative: setuptools runs this from the repository root
    include_dirs=["drivers/dsp/c"],
    libraries=["m"],
    extra_compile_args=["-O2", "-std=c99", "-D_DEFAULT_SOURCE"],
)

if __name__ == "__main__":
    import subprocess
    import sys

    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=HERE.parent.parent, check=True)
