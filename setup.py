"""The native part of the fan-out engine, built from source against Debian's libsrtp2.

Optional: without a compiler or libsrtp2-dev the package installs without it and the engine
runs its pure-Python send path (scripts/setup.sh installs both, so the tests build it).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "media_server.engine._fanout",
            sources=["media_server/engine/_fanout.c"],
            libraries=["srtp2"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
