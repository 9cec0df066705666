export { BridgeClient, BridgeError, Subscription, TERMINAL_CLOSE_CODES, isTerminalClose, isTerminalHttpStatus } from "./client.js";
export type {
  HistoryAnswer,
  PresenceAnswer,
  BridgeClientOptions,
  PublishAck,
  SubscribeOptions,
  SubscriptionState,
  ChannelPosition,
  CloseInfo,
  ConnectionState,
  GapInfo,
  GoingAwayInfo,
  ReconnectOptions,
  StateChange,
  WebSocketConstructor,
  WebSocketLike,
} from "./client.js";
export { canShare, sharedKey, sharedStatus } from "./shared.js";
export type { SharedOptions, SharedStatus } from "./shared.js";
export { decodeEvent, eventSchemas, isKnownEventType, stringifyFrame } from "./events.js";
export { channelCarries, channelTypes, isChannelEvent, namespaceOf } from "./channels.js";
export type {
  AgentEvent,
  ChannelCustomTypes,
  ChannelEvent,
  ChannelPayloadTypes,
  CircleEvent,
  NamespaceEvent,
  NamespaceOf,
  TypedNamespace,
  WorkspaceEvent,
} from "./channels.js";
export type {
  BridgeEvent,
  CustomBridgeEvent,
  EventPayloads,
  Frame,
  KnownBridgeEvent,
  KnownEventType,
  SubscribedFrame,
} from "./events.js";
export type {
  AgentJoined,
  AgentLeft,
  AgentMessage,
  CircleStatus,
  Custom,
  Error as ErrorEvent,
  Event,
  FileChanged,
  FileCreated,
  FileDeleted,
  GitStatus,
  ClientMessage,
  HistoryResponse,
  PresenceResponse,
  PublishResponse,
  PublishStreamResponse,
} from "./gen/gathering/bridge/v1/events_pb.js";
