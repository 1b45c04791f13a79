"""Packages the binding and the SQLite that build.py prepared (run build.py, not this).

The amalgamation is compiled once per edited text, flags and platform into build.json's
``engine`` folder and linked into the binding for every Python that installs it.
"""

import json
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
PREPARED = json.loads((HERE / "build.json").read_text(encoding="utf-8"))
SRC = Path(PREPARED["src"])
ENGINE = Path(PREPARED["engine"])
BINDING = ["module.c", "connection.c", "cursor.c", "cache.c", "microprotocols.c",
           "prepare_protocol.c", "statement.c", "util.c", "row.c", "blob.c"]


class BuildWithEngine(build_ext):
    """Compile sqlite3.c into ENGINE unless it is there already, then link it in."""

    def build_extension(self, ext):
        objects = sorted(ENGINE.glob("**/sqlite3.o")) + sorted(ENGINE.glob("**/sqlite3.obj"))
        if not objects:
            macros = [tuple(d.split("=", 1)) if "=" in d else (d, "1")
                      for d in PREPARED["defines"]]
            optimise = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O2"]
            objects = [Path(o) for o in self.compiler.compile(
                [str(SRC / "sqlite3.c")], output_dir=str(ENGINE), macros=macros,
                include_dirs=[str(SRC)], extra_postargs=optimise)]
        ext.extra_objects = [str(objects[0])]
        super().build_extension(ext)


setup(
    name="durable_lab_sqlite",
    version="3.50.4",
    description="SQLite with workerd's row counters, for durable_lab",
    packages=["durable_lab_sqlite"],
    python_requires=">=3.11",
    ext_modules=[Extension(
        "durable_lab_sqlite._sqlite3",
        sources=[str(SRC / name) for name in BINDING],
        include_dirs=[str(SRC)],
        define_macros=[("MODULE_NAME", '"durable_lab_sqlite"')],
        extra_link_args=[] if sys.platform == "win32" else ["-lm"],
    )],
    cmdclass={"build_ext": BuildWithEngine},
)
