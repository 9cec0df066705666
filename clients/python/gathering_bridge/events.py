"""Event types of the wire protocol (docs/protocol.md) and the decoding of one frame."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, Optional, Type, Union

from google.protobuf import json_format
from google.protobuf.message import Message

from ._gen import pb

#: Frame ``type`` -> generated message class of its ``data`` (every case of ``Event.payload`` but custom).
EVENT_TYPES: Dict[str, Type[Message]] = {
    "agent_message": pb.AgentMessage,
    "agent_joined": pb.AgentJoined,
    "agent_left": pb.AgentLeft,
    "circle_status": pb.CircleStatus,
    "file_changed": pb.FileChanged,
    "file_created": pb.FileCreated,
    "file_deleted": pb.FileDeleted,
    "git_status": pb.GitStatus,
    "error": pb.Error,
}
#: Message full name -> frame type, for publishing a message object.
TYPE_OF_MESSAGE: Dict[str, str] = {cls.DESCRIPTOR.full_name: name for name, cls in EVENT_TYPES.items()}

CONTROL_TYPES = frozenset({"ping", "pong", "subscribed", "unsubscribed", "authenticated", "gap", "auth", "subscribe", "unsubscribe",
                           "ack", "history", "presence", "reconnect"})
_ENVELOPE = ("type", "channel", "offset", "timestamp", "sender")


@dataclass(frozen=True)
class Event:
    """One event: ``data`` is the generated message for known types, the raw JSON for custom ones
    (and, for client messages relayed by the bridge, the client's fields minus the envelope)."""

    type: str
    channel: str
    offset: int
    timestamp: Optional[datetime]
    data: Union[Message, Dict[str, Any], Any]
    sender: Optional[str] = None
    frame: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def custom(self) -> bool:
        return self.type not in EVENT_TYPES

    def to_json(self) -> str:
        """The frame as one compact JSON line."""
        return json.dumps(self.frame, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Gap:
    """Offsets that were missed: not recovered, or the channel restarted (``epoch_changed``)."""

    channel: str
    first: int
    last: Optional[int]
    epoch_changed: bool


def parse_timestamp(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def decode_event(frame: Dict[str, Any]) -> Event:
    """Decodes an event frame; raises json_format.ParseError when a known type's data is malformed."""
    type_ = frame["type"]
    cls = EVENT_TYPES.get(type_)
    if cls is not None:
        data: Any = json_format.ParseDict(frame.get("data") or {}, cls(), ignore_unknown_fields=True)
    elif "data" in frame:
        data = frame["data"]
    else:
        data = {k: v for k, v in frame.items() if k not in _ENVELOPE}
    offset = frame.get("offset")
    return Event(
        type=type_,
        channel=frame.get("channel") or "",
        offset=offset if isinstance(offset, int) else 0,
        timestamp=parse_timestamp(frame.get("timestamp")),
        data=data,
        sender=frame.get("sender"),
        frame=frame,
    )
