"""BridgeSubscriber over wss:// (the bridge with --ws_tls_cert_file/--ws_tls_key_file), trusting a
CA generated for the test; publishing stays plaintext gRPC."""
from __future__ import annotations

import asyncio
import ssl

import pytest

from gathering_bridge import BridgeClosed, BridgePublisher, BridgeSubscriber, pb


async def test_wss_subscriber_trusting_a_private_ca(start_bridge, tls_certs, channel):
    b = start_bridge(tls=tls_certs)
    assert b.ws_url.startswith("wss://127.0.0.1:")
    url = f"{b.ws_url}/ws/{channel}"

    # Not trusting the test CA (the system store by default, or a fresh default context): the
    # subscriber stops with the verification error (no retry loop), well within the bound.
    for untrusting in (None, ssl.create_default_context()):
        sub = BridgeSubscriber(url, ssl=untrusting, open_timeout=5)
        try:
            with pytest.raises(BridgeClosed) as err:
                await asyncio.wait_for(sub.start(timeout=10), 15)
        finally:
            await sub.close()
        assert err.value.code == 1015, err.value
        assert "certificate verif" in str(err.value) and f"127.0.0.1:{b.ws_port}" in str(err.value), err.value
        assert sub.close_codes == [1015] and sub.reconnects == 0

    # Trusting only the generated CA: subscribed over wss://, the event published over gRPC arrives.
    states = []
    async with BridgeSubscriber(url, ssl=tls_certs.client_context(), on_state=states.append) as sub:
        assert sub._ws.transport.get_extra_info("ssl_object") is not None  # noqa: SLF001 - really TLS
        with BridgePublisher(b.grpc_target) as pub:
            r = pub.publish(channel, "agent_message", {"agent_id": 7, "content": "over wss"})
        ev = await sub.next_event(timeout=10)
    assert (ev.type, ev.channel, ev.offset) == ("agent_message", channel, r.offset)
    assert isinstance(ev.data, pb.AgentMessage) and (ev.data.agent_id, ev.data.content) == (7, "over wss")
    assert sub.positions()[channel] == (r.epoch, r.offset)
    assert "open" in states and sub.gaps == []

    assert b.stop() == 0, b.log()


async def test_ssl_context_not_used_for_ws_urls(bridge, tls_certs, channel):
    # A plaintext ws:// URL ignores `ssl` (websockets would refuse it).
    async with BridgeSubscriber(f"{bridge.ws_url}/ws/{channel}", ssl=tls_certs.client_context()) as sub:
        with BridgePublisher(bridge.grpc_target) as pub:
            pub.publish(channel, "agent_message", {"content": "plain"})
        ev = await sub.next_event(timeout=10)
    assert ev.data.content == "plain"
