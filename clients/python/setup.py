"""Builds the package with its protobuf/gRPC stubs: build_py runs generate.sh (Debian's protoc and
grpc_python_plugin) into the built package's gen/, so an installed gathering_bridge carries them.
Metadata is in pyproject.toml. The proto directory: $GATHERING_BRIDGE_PROTO_DIR, else ../../proto."""
import os
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        out = Path(self.build_lib) / "gathering_bridge" / "gen"
        subprocess.run([str(HERE / "generate.sh"), str(out)], check=True, env=dict(os.environ))


setup(cmdclass={"build_py": BuildWithStubs})
