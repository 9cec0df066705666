"""Tokens that last, terminal versus retryable closes, subscriptions as objects and the CLI with
auth, against the real bridge with --auth=token (tokens minted here: HS256 as docs/security.md)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import pytest

import gathering_bridge
from gathering_bridge import BridgeClosed, BridgeError, BridgePublisher, BridgeSubscriber


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Auth:
    def __init__(self, directory: Path) -> None:
        self.secret = secrets.token_hex(32)
        self.api_key = "k-" + secrets.token_hex(16)
        (directory / "secret.txt").write_text(self.secret)
        (directory / "keys.txt").write_text(f"{self.api_key} backend *\n")
        self.args = ["--auth=token", f"--auth_hs256_secret_file={directory / 'secret.txt'}",
                     f"--api_keys_file={directory / 'keys.txt'}", "--auth_leeway=0s"]

    def token(self, sub: str, ttl: int = 3600, channels="*", publish="*", secret=None) -> str:
        claims = {"sub": sub, "exp": int(time.time()) + ttl, "channels": channels, "publish": publish}
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64(json.dumps(claims).encode())
        sig = hmac.new((secret or self.secret).encode(), head.encode(), hashlib.sha256).digest()
        return head + "." + _b64(sig)


@pytest.fixture(scope="module")
def auth():
    with tempfile.TemporaryDirectory(prefix="bridge-py-auth-") as d:
        yield Auth(Path(d))


@pytest.fixture(scope="module")
def auth_bridge(auth):
    from conftest import Bridge

    b = Bridge(args=auth.args)
    try:
        yield b
    finally:
        b.stop()


async def _until(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_get_token_refreshes_in_band_before_the_deadline(auth, auth_bridge, channel):
    channel = channel.replace("circles/", "workspace/")  # no presence events
    deadlines = []
    sub = BridgeSubscriber(f"{auth_bridge.ws_url}/ws/{channel}", get_token=lambda: auth.token("ada", ttl=3),
                           on_control=lambda f: f["type"] == "authenticated" and deadlines.append(f["expires_at"]))
    async with sub:
        first = sub.expires_at
        await _until(lambda: len(deadlines) >= 3, 8, "two in-band refreshes")
        assert sub.token_requests == 3
        assert sub.expires_at > first and time.time() > first.timestamp()
        with BridgePublisher(auth_bridge.grpc_target, api_key=auth.api_key) as pub:
            pub.publish(channel, "agent_message", {"content": "still here"})
        ev = await sub.next_event()
        assert ev.data.content == "still here"
        assert sub.close_codes == [] and sub.reconnects == 0 and sub.identity == "ada"


async def test_refused_refresh_is_terminal_and_reported_once(auth, auth_bridge, channel):
    channel = channel.replace("circles/", "workspace/")  # no presence events
    calls = []

    async def get_token():  # async sources work too
        calls.append(1)
        return auth.token("bob", ttl=2, secret=None if len(calls) == 1 else "x" * 40)

    errors = []
    sub = BridgeSubscriber(f"{auth_bridge.ws_url}/ws/{channel}", get_token=get_token, on_error=errors.append)
    await sub.start()
    try:
        with pytest.raises(BridgeClosed) as err:
            await asyncio.wait_for(sub.__anext__(), 6)
        assert err.value.code == 4001 and "signature" in str(err.value)
        await asyncio.sleep(1.2)  # past the first token's deadline: nothing more
        assert len(errors) == 1 and errors[0] is sub.error
        assert sub.close_codes == [] and sub.reconnects == 0 and len(calls) == 2
    finally:
        await sub.close()


async def test_terminal_closes_stop_and_say_why(auth, auth_bridge, channel):
    # 4004 right after the upgrade (unknown namespace): the bridge's reason, no retry.
    sub = BridgeSubscriber(f"{auth_bridge.ws_url}/ws/nowhere/x", token=auth.token("cy"), min_delay=0.01)
    with pytest.raises(BridgeClosed) as err:
        await sub.start(timeout=5)
    await sub.close()
    assert err.value.code == 4004 and err.value.reason == "unknown namespace 'nowhere'"
    assert "unknown namespace 'nowhere'" in str(err.value)
    assert sub.reconnects == 0 and sub.close_codes == [4004]
    # 4400: a position to resume from whose epoch the bridge refuses (over 64 bytes).
    sub = BridgeSubscriber(f"{auth_bridge.ws_url}/ws/{channel}", token=auth.token("cy"), min_delay=0.01,
                           resume_from={channel: ("e" * 65, 3)})
    with pytest.raises(BridgeClosed) as err:
        await sub.start(timeout=5)
    await sub.close()
    assert err.value.code == 4400 and err.value.reason == "epoch must be valid UTF-8 of at most 64 bytes"
    assert sub.reconnects == 0 and sub.close_codes == [4400]
    # 4003: the path's channel outside the token's grants.
    sub = BridgeSubscriber(f"{auth_bridge.ws_url}/ws/{channel}", token=auth.token("cy", channels="workspace/*"),
                           min_delay=0.01)
    with pytest.raises(BridgeClosed) as err:
        await sub.start(timeout=5)
    await sub.close()
    assert err.value.code == 4003 and "does not grant" in str(err.value)
    assert sub.close_codes == [4003] and sub.subscription(channel).state == "unsubscribed"


async def test_a_full_bridge_is_retried_with_backoff_and_the_reason_kept(start_bridge, channel):
    # --max_connections=1 held by one subscriber: every other upgrade is refused with 4503 after
    # its 101. Retryable: the client backs off (no storm) and gives up after max_attempts with the
    # bridge's reason.
    full = start_bridge(args=["--max_connections=1"])
    holder = BridgeSubscriber(f"{full.ws_url}/ws/{channel}")
    await holder.start(timeout=5)
    try:
        sub = BridgeSubscriber(f"{full.ws_url}/ws/{channel}", min_delay=0.05, max_delay=0.1,
                               max_attempts=3, rng=lambda: 1.0)
        with pytest.raises(BridgeClosed) as err:
            await sub.start(timeout=10)
        await sub.close()
        assert err.value.code == 4503 and err.value.reason == "too many connections"
        assert sub.close_codes == [4503] * 4 and sub.reconnects == 3
    finally:
        await holder.close()


async def test_retryable_closes_back_off_without_a_storm():
    # Nothing listens on port 1: every attempt fails at once; delays 0.1, 0.2, 0.4, 0.4, ...
    sub = BridgeSubscriber("ws://127.0.0.1:1/ws/circles/x", min_delay=0.1, max_delay=0.4, rng=lambda: 1.0)
    task = asyncio.ensure_future(sub.start(timeout=1.5))
    with pytest.raises(TimeoutError):
        await task
    await sub.close()
    assert 3 <= len(sub.close_codes) <= 6, sub.close_codes
    assert set(sub.close_codes) == {1006}


async def test_subscriptions_settle_on_their_own_answers(auth, auth_bridge, channel):
    other = channel + "-2"
    denied = channel.replace("circles/", "workspace/")
    async with BridgeSubscriber(auth_bridge.ws_url, channels=[channel],
                                token=auth.token("dee", channels="circles/*")) as sub:
        a = sub.subscription(channel)
        assert a.state == "subscribed"
        b = await sub.subscribe(denied)
        bad = await sub.subscribe("nowhere/x")
        c = await sub.subscribe(other)
        assert (b.state, bad.state, c.state) == ("subscribing", "subscribing", "subscribing")
        with pytest.raises(BridgeError) as err:
            await b.wait()
        assert (err.value.code, err.value.channel, err.value.request) == ("forbidden", denied, "subscribe")
        with pytest.raises(BridgeError) as err:
            await bad.wait()
        assert err.value.code == "invalid_channel"
        frame = await c.wait()
        assert frame["channel"] == other and c.state == "subscribed"
        assert b.state == "unsubscribed" and b.error is not None
        assert sorted(sub.channels) == sorted([channel, other])
        assert [e.code for e in sub.errors] == ["forbidden", "invalid_channel"]
        await sub.unsubscribe(other)
        assert c.state == "unsubscribed"


async def test_client_query_parameter_is_kept(bridge, channel):
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}?client=zed") as sub:
        assert sub.client_id == "zed"
        with BridgePublisher(bridge.grpc_target) as pub:
            assert [m.identity for m in pub.presence(channel).members] == ["zed"]


async def _cli(*args: str, timeout: float = 20):
    pkg_root = str(Path(gathering_bridge.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [pkg_root, os.environ.get("PYTHONPATH", "")] if p))
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "gathering_bridge", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)


async def test_cli_with_auth_control_frames_and_types(auth, auth_bridge, channel):
    channel = channel.replace("circles/", "agents/")  # no presence events; custom types allowed
    # A mistyped --type is refused, with the likely one named; custom types need --custom.
    p = await _cli("publish", "--target", auth_bridge.grpc_target, "--channel", channel, "--type", "agent_mesage",
                   "--api-key", auth.api_key)
    _, err = await p.communicate()
    assert p.returncode == 2 and "did you mean agent_message" in err.decode() and "--custom" in err.decode()
    # Without credentials: UNAUTHENTICATED.
    p = await _cli("publish", "--target", auth_bridge.grpc_target, "--channel", channel, "--type", "agent_message")
    _, err = await p.communicate()
    assert p.returncode == 1 and "UNAUTHENTICATED" in err.decode()

    for show in (False, True):
        subp = await _cli("subscribe", f"{auth_bridge.ws_url}/ws/{channel}", "--token", auth.token("eve"),
                          "--count", "1", *(["--show-control"] if show else []))
        try:
            while True:
                line = (await asyncio.wait_for(subp.stderr.readline(), 10)).decode()
                assert line, "subscribe exited before subscribing"
                if line.startswith("# subscribed"):
                    break
            p = await _cli("publish", "--target", auth_bridge.grpc_target, "--channel", channel,
                           "--custom", "deploy.done", "--data", '{"n":1}', "--api-key", auth.api_key)
            out, err = await asyncio.wait_for(p.communicate(), 20)
            assert p.returncode == 0, err.decode()
            out, _ = await asyncio.wait_for(subp.communicate(), 10)
            assert subp.returncode == 0
            lines = [json.loads(x) for x in out.decode().splitlines()]
            events = [x for x in lines if x["type"] == "deploy.done"]
            assert len(events) == 1 and events[0]["data"] == {"n": 1}
            controls = [x["type"] for x in lines if x["type"] != "deploy.done"]
            # --count 1 counted the event, not the authenticated/subscribed frames before it.
            assert controls == (["authenticated", "subscribed"] if show else [])
        finally:
            if subp.returncode is None:
                subp.kill()
                await subp.wait()
    p = await _cli("subscribe", f"{auth_bridge.ws_url}/ws/{channel}", "--api-key", auth.api_key)
    _, err = await p.communicate()
    assert p.returncode == 2 and "--token" in err.decode()
