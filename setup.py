"""The compiled part of Likewise: ``pip install`` builds it (the rest is in pyproject.toml)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("likewise.targeting._rows", ["likewise/targeting/_rows.pyx"]),
            Extension("likewise.store._keys", ["likewise/store/_keys.pyx"]),
        ],
        compiler_directives={"language_level": "3"},
    )
)
