"""The package installs into a fresh project, as the README shows: a venv that sees Debian's
packages, `pip install --no-build-isolation --no-index ./clients/python`, then a script of that
project (outside the repository, no PYTHONPATH) subscribes and publishes against the real bridge."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_pip_install_into_a_fresh_venv(bridge, channel, tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GATHERING_BRIDGE_GEN_DIR")}
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, env=env,
                   timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-build-isolation", "--no-index",
                        str(REPO / "clients" / "python")], env=env, cwd=tmp_path, timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(f"""
        import asyncio, gathering_bridge
        from gathering_bridge import BridgePublisher, BridgeSubscriber, pb
        assert "site-packages" in gathering_bridge.__file__, gathering_bridge.__file__

        async def main():
            async with BridgeSubscriber("{bridge.ws_url}/ws/{channel}") as sub:
                with BridgePublisher("{bridge.grpc_target}") as pub:
                    pub.publish("{channel}", pb.AgentMessage(agent_id=7, content="installed"))
                ev = await sub.next_event(10)
                print(ev.type, ev.data.content)

        asyncio.run(main())
    """))
    r = subprocess.run([str(py), str(app)], env=env, cwd=tmp_path, timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    assert r.stdout.decode().strip().splitlines()[-1] == "agent_message installed"
    # The console script too.
    r = subprocess.run([str(venv / "bin" / "gathering-bridge-client"), "publish", "--target", bridge.grpc_target,
                        "--channel", channel, "--type", "agent_left", "--data", '{"agent_id":7}'],
                       env=env, cwd=tmp_path, timeout=60, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0 and b'"offset":2' in r.stdout, r.stdout.decode(errors="replace")
