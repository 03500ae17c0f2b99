"""Native speedups, built by `pip install -e .` (metadata lives in pyproject.toml).

Each extension is optional: where no C compiler is available the build goes on and maskgate
runs on its pure-Python reference implementation (the one `MASKGATE_PURE=1` selects), which
the property tests hold the native code equal to.
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

EXTENSIONS = [
    Extension(
        "masking._native",
        ["masking/_native.c", "masking/_digits.c"],
        depends=["masking/_digits.h"],
        extra_compile_args=_FLAGS,
        optional=True,
    ),
    # The row walker runs the digit finders on detector-scanned columns without a Python call.
    Extension(
        "proxy.pg._rowwalk",
        ["proxy/pg/_rowwalk.c", "masking/_digits.c"],
        depends=["masking/_digits.h"],
        include_dirs=["masking"],
        extra_compile_args=_FLAGS,
        optional=True,
    ),
    # The decision cache's literal-folding shape key (policies/sql/shapes.py is the reference).
    Extension("policies.sql._shapes", ["policies/sql/_shapes.c"], extra_compile_args=_FLAGS, optional=True),
    # The disclosure ledger's Bloom filter insertion (proxy/services/ledger.py add_keys is the reference).
    Extension("proxy.services._bloom", ["proxy/services/_bloom.c"], extra_compile_args=_FLAGS, optional=True),
]

setup(ext_modules=EXTENSIONS)
