"""Typed channels: which event types each namespace's channels carry (docs/protocol.md, "Typed
channels").

events.proto declares them with the ``channel_types`` option on ``Event`` (options.proto); the
bridge refuses a publish of any other type into a typed namespace. This module reads the same
declarations from the generated descriptor at import, so it cannot disagree with the stubs:

- ``CHANNEL_TYPES``: namespace -> :class:`ChannelTypes` (``types`` in proto order, ``custom``).
- ``namespace_of(channel)``, ``carries(channel, type, custom)``, ``ensure_carries`` (raises the
  ``ValueError`` the bridge would answer with INVALID_ARGUMENT, before anything is sent).
- For type checkers: ``CircleEventType`` / ``WorkspaceEventType`` / ``AgentEventType``
  (``Literal`` aliases), the ``CircleEvent`` / ``WorkspaceEvent`` / ``AgentEvent`` protocols, and
  ``is_channel_event(event, "workspace")``, a ``TypeGuard`` overloaded on the namespace, so that
  after ``if is_channel_event(event, "workspace"):`` mypy or pyright know ``event.type`` is one of
  the workspace's five types and ``event.data`` one of their messages. tests/test_typed_channels.py
  checks these aliases against the descriptor, so they fail loudly when the proto moves on.

A namespace events.proto does not declare is untyped: it carries anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Literal, Mapping, Optional, Protocol, Tuple, TypeGuard, Union, overload

from ._gen import pb, pb_options
from .events import EVENT_TYPES, Event


@dataclass(frozen=True)
class ChannelTypes:
    """What the channels of one typed namespace carry."""

    namespace: str
    #: Payload types (frame ``type``s), in proto order.
    types: Tuple[str, ...]
    #: Whether custom types come too (custom payloads, and client messages the namespace relays).
    custom: bool

    def describe(self) -> str:
        return ", ".join(self.types + (("custom",) if self.custom else ()))


def _read() -> Dict[str, ChannelTypes]:
    order = [f.name for f in pb.Event.DESCRIPTOR.oneofs_by_name["payload"].fields]
    out: Dict[str, ChannelTypes] = {}
    for d in pb.Event.DESCRIPTOR.GetOptions().Extensions[pb_options.channel_types]:
        listed = set(d.payloads)
        out[d.namespace] = ChannelTypes(d.namespace, tuple(n for n in order if n in listed), d.custom)
    return out


#: Namespace -> what its channels carry; namespaces not here are untyped.
CHANNEL_TYPES: Mapping[str, ChannelTypes] = _read()

TypedNamespace = Literal["circles", "workspace", "agents"]
CircleEventType = Literal["agent_message", "agent_joined", "agent_left", "circle_status", "error"]
WorkspaceEventType = Literal["agent_message", "file_changed", "file_created", "file_deleted", "git_status", "error"]
AgentEventType = Literal["agent_message", "agent_joined", "agent_left", "error"]


class _EventBase(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> Optional[datetime]: ...
    @property
    def sender(self) -> Optional[str]: ...
    @property
    def frame(self) -> Dict[str, Any]: ...
    @property
    def custom(self) -> bool: ...


class CircleEvent(_EventBase, Protocol):
    """An event of a ``circles/…`` channel: its payload types, or a custom one (``data`` a dict)."""

    @property
    def type(self) -> Union[CircleEventType, str]: ...
    @property
    def data(self) -> Union[pb.AgentMessage, pb.AgentJoined, pb.AgentLeft, pb.CircleStatus, pb.Error,
                            Dict[str, Any]]: ...


class WorkspaceEvent(_EventBase, Protocol):
    """An event of a ``workspace/…`` channel: never custom."""

    @property
    def type(self) -> WorkspaceEventType: ...
    @property
    def data(self) -> Union[pb.AgentMessage, pb.FileChanged, pb.FileCreated, pb.FileDeleted, pb.GitStatus,
                            pb.Error]: ...


class AgentEvent(_EventBase, Protocol):
    """An event of an ``agents/…`` channel: its payload types, or a custom one (``data`` a dict)."""

    @property
    def type(self) -> Union[AgentEventType, str]: ...
    @property
    def data(self) -> Union[pb.AgentMessage, pb.AgentJoined, pb.AgentLeft, pb.Error, Dict[str, Any]]: ...


def namespace_of(channel: str) -> str:
    """``"circles/dev-team"`` -> ``"circles"``."""
    return channel.split("/", 1)[0]


def carries(channel: str, type_: str, custom: Optional[bool] = None) -> bool:
    """Whether ``channel`` carries events of frame type ``type_`` (``custom``: whether it is a
    custom type; by default, any type that is not a payload name)."""
    decl = CHANNEL_TYPES.get(namespace_of(channel))
    if decl is None:
        return True
    if custom is None:
        custom = type_ not in EVENT_TYPES
    return decl.custom if custom else type_ in decl.types


def ensure_carries(channel: str, type_: str) -> None:
    """Raises ``ValueError`` (with the bridge's own wording) unless ``channel`` carries ``type_``."""
    if carries(channel, type_):
        return
    decl = CHANNEL_TYPES[namespace_of(channel)]
    what = f"custom (type '{type_}')" if type_ not in EVENT_TYPES else type_
    raise ValueError(f"channel '{channel}' does not carry {what} events: namespace '{decl.namespace}' is typed "
                     f"and carries {decl.describe()} (events.proto, channel_types)")


@overload
def is_channel_event(event: Event, namespace: Literal["circles"]) -> TypeGuard[CircleEvent]: ...
@overload
def is_channel_event(event: Event, namespace: Literal["workspace"]) -> TypeGuard[WorkspaceEvent]: ...
@overload
def is_channel_event(event: Event, namespace: Literal["agents"]) -> TypeGuard[AgentEvent]: ...
@overload
def is_channel_event(event: Event, namespace: str) -> TypeGuard[Event]: ...
def is_channel_event(event: Event, namespace: str) -> bool:
    """Whether ``event`` is on a channel of ``namespace`` and of a type that namespace carries."""
    return namespace_of(event.channel) == namespace and carries(event.channel, event.type, event.custom)


__all__ = [
    "AgentEvent",
    "AgentEventType",
    "CHANNEL_TYPES",
    "ChannelTypes",
    "CircleEvent",
    "CircleEventType",
    "TypedNamespace",
    "WorkspaceEvent",
    "WorkspaceEventType",
    "carries",
    "ensure_carries",
    "is_channel_event",
    "namespace_of",
]
