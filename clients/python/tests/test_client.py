"""gathering_bridge against the real bridge over loopback."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pytest

import gathering_bridge
from gathering_bridge import AsyncBridgePublisher, BridgeError, BridgePublisher, BridgeSubscriber, Event, pb


async def collect(sub: BridgeSubscriber, n: int, timeout: float = 5.0) -> list:
    out = []
    for _ in range(n):
        out.append(await sub.next_event(timeout))
    return out


async def test_every_event_type_decoded_with_its_type(start_bridge, channel):
    # Every type in one channel: a namespace events.proto leaves untyped (test_typed_channels.py).
    bridge = start_bridge(args=["--namespaces=circles:broadcast:presence,rooms"])
    channel = channel.replace("circles/", "rooms/")
    when = datetime(2026, 11, 25, 17, 0, 0, 123000, tzinfo=timezone.utc)
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}") as sub:
        with BridgePublisher(bridge.grpc_target) as pub:
            r = pub.publish(channel, "agent_message", {"agent_id": 7, "content": "hi", "metadata": {"model": "x", "n": 2}},
                            timestamp=when)
            assert r.offset == 1 and r.epoch
            pub.publish(channel, pb.AgentJoined(agent_id=8, agent_name="bob", identity="u-8"))
            pub.publish(channel, "agent_left", {"agent_id": 8, "reason": "closed"})
            pub.publish(channel, pb.CircleStatus(circle="dev", status="running", active_agents=3))
            pub.publish(channel, "file_changed", {"path": "a.py", "agent_id": 7, "diff": "@@", "size_bytes": "5000000000"})
            pub.publish(channel, pb.FileCreated(path="b.py", size_bytes=12))
            pub.publish(channel, "file_deleted", {"path": "c.py"})
            pub.publish(channel, pb.GitStatus(branch="main", ahead=1, staged=["a"], modified=["b", "c"]))
            pub.publish(channel, "error", {"code": "build_failed", "message": "exit 2"})
            pub.publish(channel, "deploy.done", {"env": "prod", "ok": True})
            pub.publish(channel, pb.Custom(type="build.started", data=None))
        evs = await collect(sub, 11)
    assert [e.type for e in evs] == ["agent_message", "agent_joined", "agent_left", "circle_status", "file_changed",
                                     "file_created", "file_deleted", "git_status", "error", "deploy.done",
                                     "build.started"]
    assert [e.offset for e in evs] == list(range(1, 12))
    assert all(isinstance(e, Event) and e.channel == channel for e in evs)
    am, aj, al, cs, fc, fcr, fd, gs, er, cu, cu2 = evs
    assert isinstance(am.data, pb.AgentMessage) and am.data.agent_id == 7 and am.data.content == "hi"
    assert dict(am.data.metadata) == {"model": "x", "n": 2}
    assert am.timestamp == when
    assert isinstance(aj.data, pb.AgentJoined) and aj.data.identity == "u-8"
    assert isinstance(al.data, pb.AgentLeft) and al.data.reason == "closed"
    assert isinstance(cs.data, pb.CircleStatus) and cs.data.active_agents == 3
    assert isinstance(fc.data, pb.FileChanged) and fc.data.size_bytes == 5_000_000_000
    assert fc.frame["data"]["size_bytes"] == "5000000000"
    assert isinstance(fcr.data, pb.FileCreated) and fcr.data.size_bytes == 12
    assert isinstance(fd.data, pb.FileDeleted) and fd.data.path == "c.py"
    assert isinstance(gs.data, pb.GitStatus) and list(gs.data.modified) == ["b", "c"]
    assert isinstance(er.data, pb.Error) and er.data.code == "build_failed"
    assert cu.custom and cu.data == {"env": "prod", "ok": True}
    assert cu2.custom and cu2.data == {}
    assert not am.custom


async def test_multiplexed_channels_and_client_messages(bridge, channel):
    other = channel.replace("circles/", "workspace/")
    agents = channel.replace("circles/", "agents/")
    async with BridgeSubscriber(bridge.ws_url, channels=[channel, other, agents]) as sub, \
            BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}") as peer:
        assert sorted(sub.positions()) == sorted([channel, other, agents])
        async with AsyncBridgePublisher(bridge.grpc_target) as pub:
            await pub.publish(other, "file_deleted", {"path": "x"})
            await pub.publish(agents, "agent_joined", {"agent_id": 2})
            await pub.publish(channel, "agent_message", {"content": "multi"})
        evs = await collect(sub, 3)
        assert [(e.channel, e.type, e.offset) for e in evs] == [
            (other, "file_deleted", 1), (agents, "agent_joined", 1), (channel, "agent_message", 1)]
        assert (await peer.next_event()).offset == 1
        with pytest.raises(ValueError):
            await sub.send({"type": "chat", "content": "where?"})
        await sub.send({"type": "chat", "content": "Hello"}, channel=channel)
        got = await peer.next_event()
        assert (got.type, got.custom, got.channel, got.offset) == ("chat", True, channel, 2)
        assert got.data == {"content": "Hello"}
        assert got.sender and got.sender.startswith("c-")
        # The offset the sender's own message took is not a gap for the sender.
        async with AsyncBridgePublisher(bridge.grpc_target) as pub:
            await pub.publish(channel, "agent_left", {"agent_id": 3})
        assert (await sub.next_event()).offset == 3
        assert sub.gaps == []


async def test_publish_stream_counts_rejections(bridge, channel):
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}") as sub:
        items = [(channel, "agent_message", {"content": f"n{i}"}) for i in range(20)]
        items.insert(5, ("bad channel!", "agent_message", {"content": "x"}))
        with BridgePublisher(bridge.grpc_target) as pub:
            res = pub.publish_stream(items)
        assert (res.accepted, res.rejected) == (20, 1)
        assert res.rejections[0].index == 5 and res.rejections[0].code == "INVALID_ARGUMENT"
        evs = await collect(sub, 20)
        assert [e.data.content for e in evs] == [f"n{i}" for i in range(20)]
        async with AsyncBridgePublisher(bridge.grpc_target) as apub:
            res = await apub.publish_stream({"channel": channel, "type": "agent_left", "data": {"agent_id": i}} for i in range(3))
        assert (res.accepted, res.rejected) == (3, 0)
        assert [e.offset for e in await collect(sub, 3)] == [21, 22, 23]


def test_invalid_publish_is_invalid_argument(bridge):
    with BridgePublisher(bridge.grpc_target) as pub:
        with pytest.raises(grpc.RpcError) as err:
            pub.publish("nope!", "agent_message", {"content": "x"})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            pub.publish("circles/x", "subscribed", {})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_resume_from_saved_position(bridge, channel):
    with BridgePublisher(bridge.grpc_target) as pub:
        async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}") as a:
            for i in range(1, 4):
                pub.publish(channel, "agent_message", {"content": f"m{i}"})
            await collect(a, 3)
            pos = a.positions()
        assert pos[channel][1] == 3
        for i in range(4, 7):
            pub.publish(channel, "agent_message", {"content": f"m{i}"})
    subscribed = []
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}", resume_from=pos, on_subscribed=subscribed.append) as b:
        evs = await collect(b, 3)
    assert subscribed[0]["recovered"] is True
    assert [(e.offset, e.data.content) for e in evs] == [(4, "m4"), (5, "m5"), (6, "m6")]
    assert b.gaps == []


async def test_reconnects_and_replays_what_it_missed(bridge, channel):
    states = []
    sub = BridgeSubscriber(bridge.ws_url, channels=[channel, channel.replace("circles/", "workspace/")],
                           min_delay=0.02, max_delay=0.2, on_state=states.append)
    async with sub:
        with BridgePublisher(bridge.grpc_target) as pub:
            for i in range(1, 4):
                pub.publish(channel, "agent_message", {"content": f"m{i}"})
            assert [e.offset for e in await collect(sub, 3)] == [1, 2, 3]
            # Cut the connection, and make the next attempts fail until the events are published.
            good = sub.base_url
            sub.base_url = "ws://127.0.0.1:1"
            failures = len(sub.close_codes)
            sub._ws.transport.abort()  # noqa: SLF001 - a network failure, no close handshake
            for _ in range(500):
                if len(sub.close_codes) >= failures + 2:
                    break
                await asyncio.sleep(0.01)
            assert len(sub.close_codes) >= failures + 2, f"no failed reconnect: {sub.close_codes}"
            for i in range(4, 7):
                pub.publish(channel, "agent_message", {"content": f"m{i}"})
            sub.base_url = good
            evs = await collect(sub, 3, timeout=10)
        assert [(e.offset, e.data.content) for e in evs] == [(4, "m4"), (5, "m5"), (6, "m6")]
        assert sub.gaps == []
        assert sub.reconnects >= 2
        assert "reconnecting" in states and sub.state == "open"


async def test_reconnects_after_bridge_restart(start_bridge, channel):
    b = start_bridge()
    sub = BridgeSubscriber(f"{b.ws_url}/ws/{channel}", min_delay=0.05, max_delay=0.3)
    async with sub:
        with BridgePublisher(b.grpc_target) as pub:
            r1 = pub.publish(channel, "agent_message", {"content": "before"})
        assert (await sub.next_event()).data.content == "before"
        ws_port, grpc_port = b.ws_port, b.grpc_port
        assert b.stop() == 0, b.log()
        for _ in range(500):
            if sub.close_codes:
                break
            await asyncio.sleep(0.01)
        assert sub.close_codes[:1] == [1001]
        b2 = start_bridge(ws_port=ws_port, grpc_port=grpc_port)
        await sub.wait_ready(timeout=10)
        with BridgePublisher(b2.grpc_target) as pub:
            r2 = pub.publish(channel, "agent_message", {"content": "after"})
        ev = await sub.next_event()
        assert (ev.offset, ev.data.content) == (1, "after")
        assert r2.epoch != r1.epoch
        assert sub.reconnects >= 1
        assert any(g.epoch_changed for g in sub.gaps)
        assert sub.positions()[channel] == (r2.epoch, 1)


async def test_resumes_on_another_bridge_from_the_reconnect_positions(redis_server, start_bridge, channel):
    # Two bridges on one Redis: the subscriber's bridge shuts down, and its `reconnect` frame
    # says where each channel stands for this client, counting the offset its own message took
    # (never echoed to it). Resuming there on the other bridge loses nothing and repeats nothing.
    b1 = start_bridge(args=[f"--broker={redis_server.url}"])
    b2 = start_bridge(args=[f"--broker={redis_server.url}"])
    subscribed, away = [], []
    sub = BridgeSubscriber(f"{b1.ws_url}/ws/{channel}", min_delay=0.05, max_delay=0.3,
                           on_subscribed=subscribed.append, on_going_away=lambda r, p: away.append((r, p)))
    async with sub, BridgeSubscriber(f"{b2.ws_url}/ws/{channel}") as peer:
        with BridgePublisher(b2.grpc_target) as pub:
            epoch = pub.publish(channel, "agent_message", {"content": "m1"}).epoch
            for i in (2, 3):
                pub.publish(channel, "agent_message", {"content": f"m{i}"})
            assert [e.offset for e in await collect(sub, 3)] == [1, 2, 3]
            await sub.send({"type": "message", "content": "mine"})
            own = (await collect(peer, 4))[-1]
            assert (own.offset, own.data) == (4, {"content": "mine"})
            assert sub.positions()[channel] == (epoch, 3)  # its own message is not echoed to it

            assert b1.stop() == 0, b1.log()
            for _ in range(500):
                if sub.close_codes:
                    break
                await asyncio.sleep(0.01)
            assert sub.close_codes[:1] == [1001]
            assert sub.going_away == "server shutting down"
            assert away == [("server shutting down", {channel: (epoch, 4)})]
            assert sub.positions()[channel] == (epoch, 4)

            # Published while the subscriber is away (it retries b1's closed port), then it moves.
            for i in (5, 6, 7):
                assert pub.publish(channel, "agent_message", {"content": f"m{i}"}).epoch == epoch
            sub.base_url = b2.ws_url
            await sub.wait_ready(timeout=10)
            evs = await collect(sub, 3)
        assert [(e.offset, e.data.content) for e in evs] == [(5, "m5"), (6, "m6"), (7, "m7")]
        assert subscribed[-1]["recovered"] is True and subscribed[-1]["epoch"] == epoch
        assert sub.gaps == []
        # Nothing more: a round trip through the bridge (answered after any replay) first.
        assert await sub.history(channel, since=7) is not None
        assert sub._queue.empty()  # noqa: SLF001
        assert sub.positions()[channel] == (epoch, 7)


async def test_reconnect_frame_sets_positions_of_acknowledged_channels_only():
    # The frame handling alone: positions for acknowledged channels replace the subscriber's,
    # channels it does not have or still waits on are ignored, and the frame is no event.
    seen = []
    sub = BridgeSubscriber("ws://127.0.0.1:9", channels=["circles/a", "circles/b"],
                           on_going_away=lambda r, p: seen.append((r, p)))
    sub.subscription("circles/a").acked = True
    sub.resume("circles/b", "e0", 2)
    await sub._handle(json.dumps({  # noqa: SLF001
        "type": "reconnect", "reason": "server shutting down",
        "positions": {"circles/a": {"epoch": "e1", "offset": 9}, "circles/b": {"epoch": "e1", "offset": 5},
                      "circles/zz": {"epoch": "e1", "offset": 1}}}))
    assert seen == [("server shutting down", {"circles/a": ("e1", 9)})]
    assert sub.positions() == {"circles/a": ("e1", 9), "circles/b": ("e0", 2)}
    assert sub.going_away == "server shutting down"
    assert sub._queue.empty()  # noqa: SLF001


async def test_auto_pong(start_bridge, channel):
    b = start_bridge(args=["--heartbeat_interval=0.2s"])
    sent = []
    async with BridgeSubscriber(f"{b.ws_url}/ws/{channel}") as sub:
        real_send = sub._ws.send  # noqa: SLF001

        async def spy(data):
            sent.append(data)
            await real_send(data)

        sub._ws.send = spy  # noqa: SLF001
        for _ in range(500):
            if '{"type":"pong"}' in sent:
                break
            await asyncio.sleep(0.01)
    assert '{"type":"pong"}' in sent


async def test_cli_publish_and_subscribe(bridge, channel):
    pkg_root = str(Path(gathering_bridge.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [pkg_root, os.environ.get("PYTHONPATH", "")] if p))
    subp = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gathering_bridge", "subscribe", f"{bridge.ws_url}/ws/{channel}", "--count", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        while True:
            line = (await asyncio.wait_for(subp.stderr.readline(), 10)).decode()
            assert line, "subscribe exited before subscribing"
            if line.startswith("# subscribed"):
                break
        for data in ('{"agent_id":7,"content":"hi"}', '{"x":1}'):
            typ = "agent_message" if "agent_id" in data else "my.custom"
            pubp = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gathering_bridge", "publish", "--target", bridge.grpc_target,
                "--channel", channel, *(("--type", typ) if typ == "agent_message" else ("--custom", typ)), "--data", data,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
            out, err = await asyncio.wait_for(pubp.communicate(), 20)
            assert pubp.returncode == 0, err.decode()
            res = json.loads(out)
            assert res["offset"] in (1, 2) and res["epoch"]
        lines = [json.loads(await asyncio.wait_for(subp.stdout.readline(), 10)) for _ in range(2)]
        assert lines[0]["type"] == "agent_message" and lines[0]["data"] == {"agent_id": 7, "content": "hi"}
        assert lines[0]["offset"] == 1 and lines[0]["channel"] == channel
        assert lines[1]["type"] == "my.custom" and lines[1]["data"] == {"x": 1}
        assert await asyncio.wait_for(subp.wait(), 10) == 0
        bad = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gathering_bridge", "publish", "--target", bridge.grpc_target,
            "--channel", "bad!", "--type", "agent_message", "--data", "{}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        _, err = await asyncio.wait_for(bad.communicate(), 20)
        assert bad.returncode == 1 and "INVALID_ARGUMENT" in err.decode()
    finally:
        if subp.returncode is None:
            subp.kill()
            await subp.wait()


async def test_history_and_presence(bridge, channel):
    with BridgePublisher(bridge.grpc_target) as pub:
        for i in range(1, 4):
            pub.publish(channel, "agent_message", {"content": f"h{i}"})
        h = pub.history(channel, since=1)
        assert (h.offset, h.complete) == (3, True) and h.epoch
        assert [(e.offset, e.data.content) for e in h.events] == [(2, "h2"), (3, "h3")]
        async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}") as observer:
            async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}", client_id="bob"):
                ev = await observer.next_event()
                assert ev.type == "agent_joined" and ev.data.identity == "bob"
                p = pub.presence(channel)
                assert [(m.identity, m.connections) for m in p.members] == [("bob", 1)]
                assert (p.member_count, p.connection_count) == (1, 2)
            ev = await observer.next_event()
            assert (ev.type, ev.data.identity, ev.data.reason) == ("agent_left", "bob", "closed")


async def test_history_and_presence_over_the_socket(bridge, channel):
    with BridgePublisher(bridge.grpc_target) as pub:
        for i in range(1, 4):
            pub.publish(channel, "agent_message", {"content": f"s{i}"})
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}", client_id="eve") as sub:
        h = await sub.history(channel, since=1)
        assert (h["type"], h["offset"], h["complete"]) == ("history", 4, True)
        assert [m["offset"] for m in h["messages"]] == [2, 3, 4]  # 4: eve's own agent_joined
        one = await sub.history(channel, limit=1)
        assert len(one["messages"]) == 1 and one["complete"] is False
        p = await sub.presence(channel)
        assert [(m["identity"], m["connections"]) for m in p["members"]] == [("eve", 1)]
        with pytest.raises(BridgeError) as refused:
            await sub.presence(channel.replace("circles/", "workspace/"))
        assert refused.value.code == "invalid_channel"
        # Answers to history/presence never reach the event stream.
        with BridgePublisher(bridge.grpc_target) as pub:
            pub.publish(channel, "agent_message", {"content": "live"})
        joined = await sub.next_event()  # eve's own agent_joined came live first
        assert (joined.type, joined.offset) == ("agent_joined", 4)
        ev = await sub.next_event()
        assert (ev.type, ev.data.content, ev.offset) == ("agent_message", "live", 5)


async def test_gap_when_history_does_not_cover(start_bridge, channel):
    b = start_bridge(args=["--namespaces=circles:broadcast:history=2:ttl=300,workspace:history=100:ttl=300,"
                           "agents:history=50:ttl=120"])
    with BridgePublisher(b.grpc_target) as pub:
        async with BridgeSubscriber(f"{b.ws_url}/ws/{channel}") as a:
            for i in range(1, 3):
                pub.publish(channel, "agent_message", {"content": f"m{i}"})
            await collect(a, 2)
            pos = a.positions()
        for i in range(3, 7):
            pub.publish(channel, "agent_message", {"content": f"m{i}"})
    subscribed = []
    async with BridgeSubscriber(f"{b.ws_url}/ws/{channel}", resume_from=pos, on_subscribed=subscribed.append) as sub:
        evs = await collect(sub, 2)
    assert subscribed[0]["recovered"] is False
    assert [e.offset for e in evs] == [5, 6]
    assert [(g.first, g.last, g.epoch_changed) for g in sub.gaps] == [(3, 4, False)]
