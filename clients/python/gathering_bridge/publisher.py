"""BridgePublisher (blocking) and AsyncBridgePublisher (grpc.aio): the backend side of EventService."""
from __future__ import annotations

from datetime import datetime, timezone
import json
from typing import Any, AsyncIterable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from ._gen import pb, pb_grpc
from .channels import ensure_carries
from .events import EVENT_TYPES, TYPE_OF_MESSAGE, Event, decode_event

Payload = Union[Message, str]
#: What publish_stream accepts per item: an Event, a PublishRequest, a (channel, payload[, data])
#: tuple, or a {"channel":…, "type":…, "data":…} dict.
StreamItem = Union[Message, tuple, Dict[str, Any]]


def build_event(
    channel: str,
    payload: Payload,
    data: Optional[Dict[str, Any]] = None,
    timestamp: Optional[datetime] = None,
) -> Message:
    """Builds an ``Event``.

    ``payload`` is a generated message (``pb.AgentMessage(agent_id=7, content="hi")``), or a type
    name with ``data``: a known type (``"agent_message"``, data in proto3 JSON with proto field
    names, ``{"agent_id": 7}``) or any custom type (``"deploy.done"``, data any JSON object).
    """
    event = pb.Event(channel=channel)
    if timestamp is not None:
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=timezone.utc)
        event.timestamp.FromDatetime(timestamp.astimezone(timezone.utc).replace(tzinfo=None))
    if isinstance(payload, Message):
        if data is not None:
            raise TypeError("pass either a message or a type name with data, not both")
        name = TYPE_OF_MESSAGE.get(payload.DESCRIPTOR.full_name)
        if name is not None:
            getattr(event, name).CopyFrom(payload)
        elif payload.DESCRIPTOR.full_name == pb.Custom.DESCRIPTOR.full_name:
            event.custom.CopyFrom(payload)
        else:
            raise TypeError(f"not an event payload: {payload.DESCRIPTOR.full_name}")
        return event
    if not isinstance(payload, str):
        raise TypeError("payload must be a generated message or an event type name")
    cls = EVENT_TYPES.get(payload)
    if cls is not None:
        getattr(event, payload).CopyFrom(json_format.ParseDict(data or {}, cls()))
    else:
        event.custom.type = payload
        if data:
            event.custom.data.update(data)
        else:
            event.custom.data.SetInParent()
    return event


class History:
    """A channel's retained events (``History`` RPC), decoded as subscribers see them."""

    def __init__(self, response: Message) -> None:
        self.response = response
        self.epoch: str = response.epoch
        #: The channel's latest offset.
        self.offset: int = response.offset
        #: Whether ``events`` cover everything after ``since`` (False: some were evicted).
        self.complete: bool = response.complete
        self.events: List[Event] = [decode_event(json.loads(m.json)) for m in response.messages]

    def __repr__(self) -> str:
        return f"History(epoch={self.epoch!r}, offset={self.offset}, complete={self.complete}, events={len(self.events)})"


def _base_metadata(token: Optional[str], api_key: Optional[str], metadata: Optional[Sequence[tuple]]) -> List[tuple]:
    if token and api_key:
        raise ValueError("pass token or api_key, not both")
    out: List[tuple] = []
    if token or api_key:
        out.append(("authorization", f"Bearer {token or api_key}"))
    out.extend(metadata or ())
    return out


def check_event(event: Message) -> Message:
    """Raises ``ValueError`` (the bridge's own wording: the channel, the type and what the
    namespace carries) when ``event``'s channel is in a typed namespace that does not carry its
    type; returns ``event``. ``publish`` calls it, so a mistyped publish costs no round-trip."""
    case = event.WhichOneof("payload")
    if case is None:
        return event  # the bridge answers INVALID_ARGUMENT (no payload) itself
    ensure_carries(event.channel, event.custom.type if case == "custom" else case)
    return event


def _request(item: StreamItem) -> Message:
    if isinstance(item, Message):
        if item.DESCRIPTOR.full_name == pb.PublishRequest.DESCRIPTOR.full_name:
            return item
        if item.DESCRIPTOR.full_name == pb.Event.DESCRIPTOR.full_name:
            return pb.PublishRequest(event=item)
        raise TypeError(f"cannot publish a {item.DESCRIPTOR.full_name}")
    if isinstance(item, dict):
        return pb.PublishRequest(event=build_event(item["channel"], item["type"], item.get("data"), item.get("timestamp")))
    return pb.PublishRequest(event=build_event(*item))


class BridgePublisher:
    """Blocking publisher::

        with BridgePublisher("127.0.0.1:50051") as pub:
            r = pub.publish("circles/dev-team", "agent_message", {"agent_id": 7, "content": "hi"})
            print(r.offset, r.epoch)
    """

    def __init__(self, target: str, *, credentials: Optional[grpc.ChannelCredentials] = None,
                 timeout: float = 10.0, wait_for_ready: bool = False,
                 options: Sequence[tuple] = (), token: Optional[str] = None,
                 api_key: Optional[str] = None, metadata: Optional[Sequence[tuple]] = None) -> None:
        self.target = target
        #: Sent with every call: ``authorization: Bearer <token or API key>``, then ``metadata``.
        self.metadata: List[tuple] = _base_metadata(token, api_key, metadata)
        self._channel = (grpc.secure_channel(target, credentials, options=options) if credentials
                         else grpc.insecure_channel(target, options=options))
        self._stub = pb_grpc.EventServiceStub(self._channel)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready

    def __enter__(self) -> "BridgePublisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def publish(self, channel: str, payload: Payload, data: Optional[Dict[str, Any]] = None, *,
                timestamp: Optional[datetime] = None, timeout: Optional[float] = None,
                metadata: Optional[Sequence[tuple]] = None, check: bool = True) -> Message:
        """Publishes one event; returns the ``PublishResponse`` (offset, epoch, timestamp).

        Raises ``ValueError`` before sending anything when ``channel``'s namespace is typed and
        does not carry this type (``check=False`` leaves it to the bridge), and
        ``grpc.RpcError`` (INVALID_ARGUMENT, UNAVAILABLE, ...) for what the bridge refuses."""
        event = build_event(channel, payload, data, timestamp)
        if check:
            check_event(event)
        req = pb.PublishRequest(event=event)
        return self._stub.Publish(req, timeout=timeout or self.timeout, metadata=self._md(metadata),
                                  wait_for_ready=self.wait_for_ready)

    def publish_stream(self, items: Iterable[StreamItem], *, timeout: Optional[float] = None,
                       metadata: Optional[Sequence[tuple]] = None) -> Message:
        """Publishes many events on one PublishStream call; returns ``PublishStreamResponse``.
        Items are not checked here: the bridge rejects a mistyped one alone (``rejections``) and
        accepts the others, which a client-side exception would not allow."""
        return self._stub.PublishStream((_request(i) for i in items), timeout=timeout,
                                        metadata=self._md(metadata), wait_for_ready=self.wait_for_ready)

    def subscribe(self, channels: Sequence[str], *, lifecycle: bool = False,
                  metadata: Optional[Sequence[tuple]] = None) -> Iterator[Message]:
        """Streams ``ClientMessage``s that WebSocket clients send on matching channels
        (exact names, ``namespace/*`` or ``*``); with ``lifecycle`` also subscription changes.
        ``.cancel()`` the returned iterator to stop."""
        return self._stub.Subscribe(pb.SubscribeRequest(channels=list(channels), lifecycle=lifecycle),
                                    metadata=self._md(metadata), wait_for_ready=self.wait_for_ready)

    def history(self, channel: str, since: int = 0, limit: int = 0, *, timeout: Optional[float] = None,
                metadata: Optional[Sequence[tuple]] = None) -> History:
        """The retained events of ``channel`` after offset ``since`` (0: all), at most ``limit``."""
        return History(self._stub.History(pb.HistoryRequest(channel=channel, since=since, limit=limit),
                                          timeout=timeout or self.timeout, metadata=self._md(metadata),
                                          wait_for_ready=self.wait_for_ready))

    def presence(self, channel: str, *, timeout: Optional[float] = None,
                 metadata: Optional[Sequence[tuple]] = None) -> Message:
        """``PresenceResponse``: the channel's members (identity, connections, joined_at) and counts."""
        return self._stub.Presence(pb.PresenceRequest(channel=channel), timeout=timeout or self.timeout,
                                   metadata=self._md(metadata), wait_for_ready=self.wait_for_ready)

    def _md(self, metadata: Optional[Sequence[tuple]]) -> Optional[List[tuple]]:
        out = list(self.metadata) + list(metadata or ())
        return out or None

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)


class AsyncBridgePublisher:
    """The same on ``grpc.aio``::

        async with AsyncBridgePublisher("127.0.0.1:50051") as pub:
            await pub.publish("circles/dev-team", pb.AgentMessage(agent_id=7, content="hi"))
    """

    def __init__(self, target: str, *, credentials: Optional[grpc.ChannelCredentials] = None,
                 timeout: float = 10.0, wait_for_ready: bool = False,
                 options: Sequence[tuple] = (), token: Optional[str] = None,
                 api_key: Optional[str] = None, metadata: Optional[Sequence[tuple]] = None) -> None:
        self.target = target
        #: Sent with every call: ``authorization: Bearer <token or API key>``, then ``metadata``.
        self.metadata: List[tuple] = _base_metadata(token, api_key, metadata)
        self._channel = (grpc.aio.secure_channel(target, credentials, options=options) if credentials
                         else grpc.aio.insecure_channel(target, options=options))
        self._stub = pb_grpc.EventServiceStub(self._channel)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready

    async def __aenter__(self) -> "AsyncBridgePublisher":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def publish(self, channel: str, payload: Payload, data: Optional[Dict[str, Any]] = None, *,
                      timestamp: Optional[datetime] = None, timeout: Optional[float] = None,
                      metadata: Optional[Sequence[tuple]] = None, check: bool = True) -> Message:
        """As ``BridgePublisher.publish`` (the same ``ValueError`` before sending)."""
        event = build_event(channel, payload, data, timestamp)
        if check:
            check_event(event)
        req = pb.PublishRequest(event=event)
        return await self._stub.Publish(req, timeout=timeout or self.timeout, metadata=self._md(metadata),
                                        wait_for_ready=self.wait_for_ready)

    async def history(self, channel: str, since: int = 0, limit: int = 0, *, timeout: Optional[float] = None,
                      metadata: Optional[Sequence[tuple]] = None) -> History:
        return History(await self._stub.History(pb.HistoryRequest(channel=channel, since=since, limit=limit),
                                                timeout=timeout or self.timeout, metadata=self._md(metadata),
                                                wait_for_ready=self.wait_for_ready))

    async def presence(self, channel: str, *, timeout: Optional[float] = None,
                       metadata: Optional[Sequence[tuple]] = None) -> Message:
        return await self._stub.Presence(pb.PresenceRequest(channel=channel), timeout=timeout or self.timeout,
                                         metadata=self._md(metadata), wait_for_ready=self.wait_for_ready)

    def _md(self, metadata: Optional[Sequence[tuple]]) -> Optional[List[tuple]]:
        out = list(self.metadata) + list(metadata or ())
        return out or None

    async def publish_stream(self, items: Union[Iterable[StreamItem], AsyncIterable[StreamItem]], *,
                             timeout: Optional[float] = None,
                             metadata: Optional[Sequence[tuple]] = None) -> Message:
        call = self._stub.PublishStream(timeout=timeout, metadata=self._md(metadata), wait_for_ready=self.wait_for_ready)
        if hasattr(items, "__aiter__"):
            async for item in items:  # type: ignore[union-attr]
                await call.write(_request(item))
        else:
            for item in items:  # type: ignore[union-attr]
                await call.write(_request(item))
        await call.done_writing()
        return await call
