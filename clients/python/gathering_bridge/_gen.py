"""Locates (or, on first use, generates) the protobuf/gRPC stubs and imports them.

The stubs are generated from proto/ by clients/python/generate.sh into gathering_bridge/gen/
(gitignored), or into the directory named by $GATHERING_BRIDGE_GEN_DIR.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
GEN_DIR = Path(os.environ.get("GATHERING_BRIDGE_GEN_DIR") or _HERE / "gen")
_MODULES = [GEN_DIR / "gathering" / "bridge" / "v1" / f"{m}_pb2.py" for m in ("events", "options")]

# options_pb2 too: stubs generated before options.proto existed are regenerated.
if not all(m.exists() for m in _MODULES):
    script = _HERE.parent / "generate.sh"
    try:
        subprocess.run([str(script), str(GEN_DIR)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as exc:  # pragma: no cover - environment problem
        detail = getattr(exc, "stderr", b"") or b""
        raise ImportError(
            f"gathering_bridge: no generated stubs in {GEN_DIR} and `{script} {GEN_DIR}` failed: "
            f"{exc} {detail.decode(errors='replace')}"
        ) from exc

if str(GEN_DIR) not in sys.path:
    sys.path.insert(0, str(GEN_DIR))

from gathering.bridge.v1 import events_pb2 as pb  # noqa: E402
from gathering.bridge.v1 import events_pb2_grpc as pb_grpc  # noqa: E402
from gathering.bridge.v1 import options_pb2 as pb_options  # noqa: E402

__all__ = ["pb", "pb_grpc", "pb_options", "GEN_DIR"]
