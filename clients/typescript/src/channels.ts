// Typed channels: the event types a channel carries, narrowed by its namespace as events.proto
// declares it (the `channel_types` option; docs/protocol.md "Typed channels"). The declarations
// come from the generated src/gen/gathering/bridge/v1/channels_pb.ts; this file only turns them
// into types and a runtime check.
//
//   client.subscribe("circles/dev-team")   → Subscription<CircleEvent>  (circle events + custom)
//   client.subscribe("workspace/42")       → Subscription<ChannelEvent<"workspace/42">>  (files, git, error)
//   client.subscribe("rooms/a")            → Subscription<BridgeEvent>  (an untyped namespace)
//   client.subscribe(someString)           → Subscription<BridgeEvent>  (not known statically)
import type { BridgeEvent, CustomBridgeEvent, KnownBridgeEvent } from "./events.js";
import {
  channelTypes,
  type ChannelCustomTypes,
  type ChannelPayloadTypes,
  type TypedNamespace,
} from "./gen/gathering/bridge/v1/channels_pb.js";

export { channelTypes };
export type { ChannelCustomTypes, ChannelPayloadTypes, TypedNamespace };

/** A channel name's namespace: `"circles/dev-team"` → `"circles"` (`string` stays `string`). */
export type NamespaceOf<C extends string> = C extends `${infer N}/${string}` ? N : C;

/** The events of a typed namespace: its payload types, and custom ones when it allows them. */
export type NamespaceEvent<N extends TypedNamespace> =
  | Extract<KnownBridgeEvent, { type: ChannelPayloadTypes[N] }>
  | (ChannelCustomTypes[N] extends true ? CustomBridgeEvent : never);

/**
 * The events a subscription to channel `C` delivers: NamespaceEvent of its namespace when that
 * is typed, every BridgeEvent otherwise (untyped namespaces, and channels only known at run time).
 */
export type ChannelEvent<C extends string> =
  NamespaceOf<C> extends infer N ? (N extends TypedNamespace ? NamespaceEvent<N> : BridgeEvent) : never;

/** GatheRing's namespaces by name, for annotations (`(e: CircleEvent) => ...`). */
export type CircleEvent = NamespaceEvent<"circles">;
export type WorkspaceEvent = NamespaceEvent<"workspace">;
export type AgentEvent = NamespaceEvent<"agents">;

/** The namespace of a channel name (the part before the first `/`). */
export function namespaceOf(channel: string): string {
  const i = channel.indexOf("/");
  return i < 0 ? channel : channel.slice(0, i);
}

function isTypedNamespace(ns: string): ns is TypedNamespace {
  return Object.prototype.hasOwnProperty.call(channelTypes, ns);
}

/** Whether `channel` carries events of frame type `type` (custom ones: `custom` true). */
export function channelCarries(channel: string, type: string, custom: boolean): boolean {
  const ns = namespaceOf(channel);
  if (!isTypedNamespace(ns)) return true;
  const decl = channelTypes[ns];
  return custom ? decl.custom : (decl.types as readonly string[]).includes(type);
}

/**
 * Whether `event` is one that `channel` carries: the run-time side of ChannelEvent. A
 * Subscription drops (and logs) events that fail it, which only a bridge built from another
 * events.proto can send, so that its handlers get exactly the types their signatures say.
 */
export function isChannelEvent<C extends string>(channel: C, event: BridgeEvent): event is ChannelEvent<C> {
  return channelCarries(channel, event.type, event.custom);
}
