"""Typed channels (events.proto's channel_types): what the bridge refuses and delivers, and the
client's declarations, narrowing helpers and run-time guard."""
from __future__ import annotations

import asyncio
import json
import typing

import grpc
import pytest
import websockets

from gathering_bridge import AsyncBridgePublisher, BridgePublisher, BridgeSubscriber, pb
from gathering_bridge import channels
from gathering_bridge.channels import CHANNEL_TYPES, carries, ensure_carries, is_channel_event, namespace_of

CIRCLES = ("namespace 'circles' is typed and carries agent_message, agent_joined, agent_left, circle_status, "
           "error, custom (events.proto, channel_types)")


def test_declarations_come_from_the_descriptor_and_the_literal_aliases_match_them():
    assert sorted(CHANNEL_TYPES) == ["agents", "circles", "workspace"]
    assert set(typing.get_args(channels.TypedNamespace)) == set(CHANNEL_TYPES)
    for ns, alias in (("circles", channels.CircleEventType), ("workspace", channels.WorkspaceEventType),
                      ("agents", channels.AgentEventType)):
        assert typing.get_args(alias) == CHANNEL_TYPES[ns].types, f"{ns}: update the Literal alias in channels.py"
    assert CHANNEL_TYPES["circles"].custom and not CHANNEL_TYPES["workspace"].custom
    assert namespace_of("circles/dev-team") == "circles"
    assert carries("circles/x", "agent_message") and not carries("circles/x", "file_changed")
    assert carries("circles/x", "tool_call") and not carries("workspace/1", "tool_call")
    assert carries("rooms/a", "file_changed")  # untyped


@pytest.fixture(scope="module")
def publisher(bridge):
    # One gRPC channel for the module: opening one is slow.
    with BridgePublisher(bridge.grpc_target) as pub:
        pub.wait_ready()
        yield pub


def test_publish_of_another_type_is_refused_with_the_allowed_types(publisher, channel):
    # check=False: what the bridge itself answers.
    with pytest.raises(grpc.RpcError) as err:
        publisher.publish(channel, "file_changed", {"path": "a.py"}, check=False)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == f"channel '{channel}' does not carry file_changed events: {CIRCLES}"
    # The client's own check says the same, before anything is sent.
    with pytest.raises(ValueError) as local:
        ensure_carries(channel, "file_changed")
    assert str(local.value) == err.value.details()
    with pytest.raises(ValueError) as checked:
        publisher.publish(channel, "file_changed", {"path": "a.py"})
    assert str(checked.value) == err.value.details()


def test_the_publisher_checks_before_sending(publisher, channel):
    workspace = f"workspace/{channel.split('/', 1)[1]}"
    # A message payload, a type name and a custom type, each refused locally with the channel, the
    # type and what the namespace carries.
    with pytest.raises(ValueError, match=rf"channel '{channel}' does not carry file_changed events: "
                                         r"namespace 'circles' is typed and carries agent_message"):
        publisher.publish(channel, pb.FileChanged(path="a.py"))
    with pytest.raises(ValueError, match=rf"channel '{workspace}' does not carry circle_status events: .*"
                                         r"carries agent_message, file_changed, file_created, file_deleted, "
                                         r"git_status, error \("):
        publisher.publish(workspace, "circle_status", {"status": "idle"})
    with pytest.raises(ValueError, match=rf"channel '{workspace}' does not carry custom \(type 'deploy.done'\)"):
        publisher.publish(workspace, "deploy.done", {"env": "prod"})
    # Nothing reached the bridge: neither channel has an event; what they carry still goes through.
    assert publisher.history(channel).offset == 0 and publisher.history(workspace).offset == 0
    assert publisher.publish(workspace, "git_status", {"branch": "main"}).offset == 1
    assert publisher.publish(channel, "deploy.done", {"env": "prod"}).offset == 1


def test_the_check_costs_no_round_trip():
    # Nothing listens on this address: a call would fail UNAVAILABLE; the check fails first.
    with BridgePublisher("127.0.0.1:1", timeout=2.0) as pub:
        with pytest.raises(ValueError, match="does not carry file_changed events"):
            pub.publish("circles/x", "file_changed", {"path": "a"})


async def test_the_async_publisher_checks_before_sending(bridge, channel):
    async with AsyncBridgePublisher(bridge.grpc_target) as pub:
        with pytest.raises(ValueError, match=rf"channel '{channel}' does not carry git_status events"):
            await pub.publish(channel, "git_status", {"branch": "main"})
        with pytest.raises(grpc.RpcError) as err:
            await pub.publish(channel, "git_status", {"branch": "main"}, check=False)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_rejects_the_item_and_the_allowed_type_is_delivered(bridge, channel):
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}") as sub:
        with BridgePublisher(bridge.grpc_target) as pub:
            res = pub.publish_stream([(channel, "git_status", {"branch": "main"}),
                                      (channel, "agent_message", {"content": "allowed"})])
        assert (res.accepted, res.rejected) == (1, 1)
        assert res.rejections[0].index == 0 and res.rejections[0].code == "INVALID_ARGUMENT"
        assert res.rejections[0].message == f"channel '{channel}' does not carry git_status events: {CIRCLES}"
        ev = await sub.next_event()
    assert ev.type == "agent_message" and ev.data.content == "allowed"
    assert is_channel_event(ev, "circles") and not is_channel_event(ev, "workspace")


def test_an_untyped_namespace_accepts_anything(start_bridge):
    b = start_bridge(args=["--namespaces=circles:broadcast:presence,workspace,agents,rooms"])
    with BridgePublisher(b.grpc_target) as pub:
        for type_, data in (("file_changed", {"path": "x"}), ("circle_status", {"status": "idle"}),
                            ("whatever", {"n": 1})):
            assert pub.publish("rooms/a", type_, data).offset > 0
        with pytest.raises(grpc.RpcError) as err:
            pub.publish("workspace/1", "whatever", {"n": 1}, check=False)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not carry custom (type 'whatever') events" in err.value.details()


def test_a_contradicting_configuration_does_not_start(start_bridge):
    with pytest.raises(RuntimeError) as err:
        start_bridge(args=["--namespaces=circles:broadcast:presence,workspace:presence,agents"])
    assert "namespace 'workspace' has presence" in str(err.value)


async def test_the_subscriber_drops_what_its_channel_cannot_carry(caplog):
    # A scripted server stands in for a bridge built from another events.proto.
    async def serve(ws, *_):
        await ws.send(json.dumps({"type": "subscribed", "channel": "workspace/1", "epoch": "e", "offset": 0}))
        for i, (type_, data) in enumerate((("circle_status", {"status": "x"}), ("tool_call", {}),
                                           ("circle_status", {}), ("file_changed", {"path": "a"})), start=1):
            await ws.send(json.dumps({"type": type_, "channel": "workspace/1", "offset": i, "data": data}))
        await ws.wait_closed()

    async with websockets.serve(serve, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with BridgeSubscriber(f"ws://127.0.0.1:{port}/ws/workspace/1", reconnect=False) as sub:
            ev = await sub.next_event()
    assert ev.type == "file_changed" and isinstance(ev.data, pb.FileChanged)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2 and "circle_status event on workspace/1" in dropped[0]
