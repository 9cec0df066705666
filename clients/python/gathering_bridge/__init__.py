"""Python client of gathering-bridge: typed WebSocket subscriber and gRPC publisher.

Stubs are generated from proto/ on first import (clients/python/generate.sh) into
gathering_bridge/gen/, or read from $GATHERING_BRIDGE_GEN_DIR.
"""
from ._gen import pb, pb_grpc
from .channels import CHANNEL_TYPES, carries, ensure_carries, is_channel_event, namespace_of
from .events import EVENT_TYPES, Event, Gap, decode_event
from .publisher import AsyncBridgePublisher, BridgePublisher, History, build_event
from .subscriber import TERMINAL_CLOSE_CODES, BridgeClosed, BridgeError, BridgeSubscriber, Subscription

__all__ = [
    "AsyncBridgePublisher",
    "BridgeClosed",
    "BridgeError",
    "BridgePublisher",
    "BridgeSubscriber",
    "CHANNEL_TYPES",
    "EVENT_TYPES",
    "Event",
    "Gap",
    "History",
    "Subscription",
    "TERMINAL_CLOSE_CODES",
    "build_event",
    "carries",
    "ensure_carries",
    "is_channel_event",
    "namespace_of",
    "decode_event",
    "pb",
    "pb_grpc",
]
__version__ = "0.1.0"
