"""The optional C accelerator; everything else is in pyproject.toml.

``heliosdb_wasm._native`` (src/heliosdb_wasm/_native.c) runs the numeric fast
call path without Python per value (see fastcall.py). It is optional: without
a C compiler or the Python headers the build only warns, and the pure-Python
``fastcall.RawCall`` is used instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "heliosdb_wasm._native",
            sources=["src/heliosdb_wasm/_native.c"],
            optional=True,
        )
    ]
)
