"""The compiled part of Likewise: ``pip install`` builds it (the rest is in pyproject.toml)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("likewise.targeting._rows", ["likewise/targeting/_rows.pyx"]),
            Extension("likewise.store._keys", ["likewise/store/_keys.pyx"]),
            Extension("likewise.ingest._track", ["likewise/ingest/_track.pyx"]),
            Extension("likewise.ingest._dedup", ["likewise/ingest/_dedup.pyx"]),
            # SHA-256 from OpenSSL's libcrypto, which CPython's hashlib already links: named by
            # its versioned file so no development package is needed to build.
            Extension(
                "likewise.identity._fast",
                ["likewise/identity/_fast.pyx"],
                extra_link_args=["-l:libcrypto.so.3"],
            ),
        ],
        compiler_directives={"language_level": "3"},
    )
)
