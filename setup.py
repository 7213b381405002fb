"""The native part of the fan-out engine, built from source with nothing but a C compiler
and Python's headers: it calls the libsrtp inside pylibsrtp, which aiortc installs.

Optional: without a compiler the package installs without it and the engine runs its
pure-Python send path (start-up says so once, and /metrics shows engine="python").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "media_server.engine._fanout",
            sources=["media_server/engine/_fanout.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
