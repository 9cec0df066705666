// The event types of the wire protocol, mapped to the generated schemas, and the decoding of
// one server frame into a typed event. Everything here follows docs/protocol.md.
import { fromJson, type JsonObject, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import {
  AgentJoinedSchema,
  AgentLeftSchema,
  AgentMessageSchema,
  CircleStatusSchema,
  ErrorSchema,
  FileChangedSchema,
  FileCreatedSchema,
  FileDeletedSchema,
  GitStatusSchema,
} from "./gen/gathering/bridge/v1/events_pb.js";

/** Frame `type` → generated schema of its `data`, one per case of `Event.payload` (but `custom`). */
export const eventSchemas = {
  agent_message: AgentMessageSchema,
  agent_joined: AgentJoinedSchema,
  agent_left: AgentLeftSchema,
  circle_status: CircleStatusSchema,
  file_changed: FileChangedSchema,
  file_created: FileCreatedSchema,
  file_deleted: FileDeletedSchema,
  git_status: GitStatusSchema,
  error: ErrorSchema,
} as const;

export type KnownEventType = keyof typeof eventSchemas;
/** `agent_message` → `AgentMessage`, ... */
export type EventPayloads = { [K in KnownEventType]: MessageShape<(typeof eventSchemas)[K]> };

export function isKnownEventType(type: string): type is KnownEventType {
  return Object.prototype.hasOwnProperty.call(eventSchemas, type);
}

/** Types that are frames of the protocol itself, never events. */
export const CONTROL_TYPES = new Set([
  "ping", "pong", "subscribed", "unsubscribed", "authenticated", "gap", "auth", "subscribe", "unsubscribe",
  "ack", "history", "presence", "reconnect",
]);

/** One JSON frame as the server sent it. */
export interface Frame {
  type: string;
  channel?: string;
  offset?: number;
  timestamp?: string;
  data?: JsonValue;
  sender?: string;
  [field: string]: JsonValue | undefined;
}

/** `{"type":"subscribed",...}`: sent after each subscription. */
export interface SubscribedFrame extends Frame {
  type: "subscribed";
  channel: string;
  epoch: string;
  offset: number;
  recovered?: boolean;
}

interface EventBase {
  /** The channel; `""` for the bridge's own error frames, which belong to the connection. */
  channel: string;
  /** Position in the channel (from 1); `0` when the frame has none (connection errors). */
  offset: number;
  /** RFC 3339 timestamp as sent, `""` when absent. */
  timestamp: string;
  /** `timestamp` parsed, when present. */
  date: Date | undefined;
  /** Connection id of the sending client, for client messages relayed by the bridge. */
  sender: string | undefined;
  /** The frame as received. */
  frame: Frame;
}

/** An event of one of the proto's payload types, `data` decoded with the generated `fromJson`. */
export type KnownBridgeEvent = {
  [K in KnownEventType]: EventBase & { custom: false; type: K; data: EventPayloads[K] };
}[KnownEventType];

/**
 * A `custom` event (its `type` is the custom type name; `data` is its raw JSON) or a client
 * message relayed by the bridge (no `data`: its own fields minus the envelope).
 */
export interface CustomBridgeEvent extends EventBase {
  custom: true;
  type: string;
  data: JsonValue;
}

export type BridgeEvent = KnownBridgeEvent | CustomBridgeEvent;

const ENVELOPE = new Set(["type", "channel", "offset", "timestamp", "sender"]);

/** Decodes an event frame. Throws when a known type's `data` does not match its schema. */
export function decodeEvent(frame: Frame): BridgeEvent {
  const timestamp = typeof frame.timestamp === "string" ? frame.timestamp : "";
  const base: EventBase = {
    channel: typeof frame.channel === "string" ? frame.channel : "",
    offset: typeof frame.offset === "number" ? frame.offset : 0,
    timestamp,
    date: timestamp ? new Date(timestamp) : undefined,
    sender: typeof frame.sender === "string" ? frame.sender : undefined,
    frame,
  };
  if (isKnownEventType(frame.type)) {
    const schema = eventSchemas[frame.type];
    const data = fromJson(schema, (frame.data ?? {}) as JsonValue, { ignoreUnknownFields: true });
    return { ...base, custom: false, type: frame.type, data } as KnownBridgeEvent;
  }
  let data: JsonValue;
  if ("data" in frame && frame.data !== undefined) {
    data = frame.data;
  } else {
    const rest: JsonObject = {};
    for (const [k, v] of Object.entries(frame)) if (!ENVELOPE.has(k) && v !== undefined) rest[k] = v;
    data = rest;
  }
  return { ...base, custom: true, type: frame.type, data };
}

/** JSON.stringify that writes bigints (int64 fields) as strings, as proto3 JSON does. */
export function stringifyFrame(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}
