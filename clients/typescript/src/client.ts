// BridgeClient: one WebSocket to the bridge carrying one or several channels, typed handlers,
// subscriptions as objects (state, typed events, recovered/gap, a promise settling on the
// bridge's answer), tokens that last (getToken: first connection, in-band refresh before expiry,
// reconnect), terminal versus retryable close codes, automatic pong, reconnect with exponential
// backoff + full jitter, and resume from the last offset + epoch of every channel. Works with the
// browser's WebSocket and with the `ws` package.
import type { JsonValue } from "@bufbuild/protobuf";
import {
  CONTROL_TYPES,
  decodeEvent,
  stringifyFrame,
  type BridgeEvent,
  type CustomBridgeEvent,
  type EventPayloads,
  type Frame,
  type KnownEventType,
  type SubscribedFrame,
} from "./events.js";
import { maybeShared, type SharedOptions } from "./shared.js";
import { channelCarries, type ChannelEvent } from "./channels.js";

/** The part of the WebSocket API the client uses (browser WebSocket and `ws` both have it). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
}
// `ws`'s and the DOM's constructors both fit; their exact handler types differ, hence `any`.
export type WebSocketConstructor = new (url: string) => any;

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/**
 * Close codes after which reconnecting cannot help (docs/protocol.md "Close codes", checked
 * against the bridge's list by protocol_test): protocol errors (1002, 1003, 1007, 1008, 1010),
 * 4001 unauthenticated (but see `getToken`), 4003 forbidden, and the refusals the bridge sends
 * right after the upgrade, 4004 (unknown namespace) and 4400 (bad channel, since, epoch or
 * client). Every other code (1001 going away, 1006 abnormal, 1009 too big, 1011–1014, 4008 slow
 * consumer or rate limited, 4429 too many connections from this address, 4503 shutting down or
 * full, ...) is retried with backoff. The bridge's reason reaches `onClose` and the error.
 */
export const TERMINAL_CLOSE_CODES: readonly number[] = [1002, 1003, 1007, 1008, 1010, 4001, 4003, 4004, 4400];

/** Whether a close code stops the client for good (see TERMINAL_CLOSE_CODES). */
export function isTerminalClose(code: number): boolean {
  return TERMINAL_CLOSE_CODES.includes(code);
}

/**
 * Whether an HTTP status refusing the upgrade is terminal: every 4xx but 408 and 429. Only Node's
 * `ws` reports it; browsers see 1006.
 */
export function isTerminalHttpStatus(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

export interface ReconnectOptions {
  /** First delay's upper bound, ms (default 500). */
  minDelayMs?: number;
  /** Upper bound of any delay, ms (default 30 000). */
  maxDelayMs?: number;
  /** Growth of the bound per failed attempt (default 2). */
  factor?: number;
  /** Give up after this many consecutive failed attempts (default: never). */
  maxAttempts?: number;
  /** Close codes after which the client stops (default TERMINAL_CLOSE_CODES). */
  stopOnCodes?: number[];
}

/** Where a channel's stream stands: the last offset seen in the channel's epoch. */
export interface ChannelPosition {
  epoch: string;
  offset: number;
}

/** Where a new subscription starts: `since` (with the channel's `epoch`) replays what followed. */
export interface SubscribeOptions {
  /** Replay retained events after this offset (`0` with no epoch: everything retained). */
  since?: number;
  /** The epoch `since` belongs to; without it the bridge takes `since` in the current epoch. */
  epoch?: string;
}

/** The bridge refused something, or the client stopped: what, and why. */
export class BridgeError extends Error {
  constructor(
    /** The bridge's error code (`forbidden`, `invalid_channel`, ...), or the client's own (`closed`, `token_error`, `http_404`, `close_4003`, ...). */
    readonly code: string,
    message: string,
    /** The channel the refusal is about, when known. */
    readonly channel?: string,
    /** The request it answers (`subscribe`, `unsubscribe`, `auth`, `message`, `ping`), when known. */
    readonly request?: string,
    /** The close code, for errors that closed the connection. */
    readonly closeCode?: number,
  ) {
    super(message);
    this.name = "BridgeError";
  }
}

export interface BridgeClientOptions {
  /**
   * The bridge: `ws://host:port` (channels from `channels`), or a channel URL
   * `ws://host:port/ws/circles/dev-team` (that channel plus `channels`). http(s) URLs are mapped
   * to ws(s). A `client` query parameter is kept as `clientId`.
   */
  url: string;
  channels?: string[];
  /** Token for bridges with auth on (a fixed one; see `getToken` for tokens that last). */
  token?: string;
  /**
   * Called for a token before the first connection, before each reconnection, and before the
   * current one expires (the bridge's `authenticated.expires_at`): the new token is sent in an
   * `{"type":"auth"}` frame on the open socket. A refusal of a token the bridge never accepted,
   * or of a refreshed one, is terminal (reported once, through `onError` and `onClose`).
   */
  getToken?: () => string | Promise<string>;
  /**
   * How long before the bridge's deadline to refresh, ms. Default: a fifth of the token's
   * remaining lifetime, between 1 s and 60 s.
   */
  refreshMarginMs?: number;
  /** How the token travels: `?token=` on the upgrade (default) or a first `{"type":"auth"}` frame. */
  tokenTransport?: "query" | "frame";
  /** Identity sent as `?client=` when auth is off (default: the URL's `client` parameter). */
  clientId?: string;
  /** Always use `/ws` + subscribe frames, even for a single channel. */
  multiplex?: boolean;
  /**
   * Share one WebSocket between the tabs of this origin (src/shared.ts): one tab, elected with a
   * Web Lock, holds the connection and routes every tab's channels, requests and answers over a
   * BroadcastChannel; when it closes, another takes over and every tab resumes with since/epoch.
   * Implies `multiplex`. Without Web Locks or BroadcastChannel (Node), the client connects itself.
   * `{ workerUrl }`: a SharedWorker running this package's `shared-worker` script holds the
   * connection instead of an elected tab (leader election when it cannot be used).
   */
  shared?: boolean | SharedOptions;
  /** WebSocket implementation; default `globalThis.WebSocket`. In Node < 22 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Backoff settings, or `false` to never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Answer the bridge's JSON `ping` with `pong` (default true). */
  autoPong?: boolean;
  /** Positions to resume from on the first connection (e.g. persisted from `positions()`). */
  resumeFrom?: Record<string, ChannelPosition>;
  /** Random source in [0,1) for the jitter (default Math.random). */
  random?: () => number;
  /**
   * How long `publish()` waits for its answer once the bridge has answered a later frame (default
   * 10000 ms): a bridge with a broker acks after Redis has, later than the `ping` behind it. A
   * message with no answer by then (refused silently inside a rate-limit burst) rejects `timeout`.
   */
  publishTimeoutMs?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the client will try again. */
  willReconnect: boolean;
  /** The HTTP status that refused the upgrade, when the WebSocket implementation tells it (Node's `ws`). */
  httpStatus?: number;
}

export interface GapInfo {
  channel: string;
  /** First missing offset. */
  from: number;
  /** Last missing offset, when known. */
  to: number | undefined;
  /** The channel's epoch changed (bridge restart): offsets restarted, what was missed is unknown. */
  epochChanged: boolean;
}

/**
 * The bridge's `reconnect` frame: it is shutting down (close 1001 follows, and the client
 * reconnects with its usual backoff). `positions` are the bridge's resume positions for the
 * channels of this client it listed, already set as where the next connection resumes.
 */
export interface GoingAwayInfo {
  reason: string;
  positions: Record<string, ChannelPosition>;
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Reconnections made so far (successful or not). */
  reconnects: number;
  /** For `reconnecting`: the delay before the next attempt, ms. */
  delayMs?: number;
}

/** An acknowledged client message: `offset` when the bridge's answer carried one. */
export interface PublishAck {
  id: string;
  channel: string | undefined;
  /** The offset the message took, when the bridge sends acks (`{"type":"ack","id",...}`). */
  offset: number | undefined;
  /** `ack`: the bridge answered this id; `barrier`: no error before the answer to a later frame. */
  confirmedBy: "ack" | "barrier";
}

/** `T` where a subscription delivering `E` takes custom type `T`: never for known types, or when `E` has no custom events. */
type CustomTypeOf<E extends BridgeEvent, T extends string> = [Extract<E, { custom: true }>] extends [never] ? never : T extends KnownEventType ? never : T;

type Listener<A extends unknown[]> = (...args: A) => void;

class Listeners<A extends unknown[]> {
  private readonly set = new Set<Listener<A>>();
  add(fn: Listener<A>): () => void {
    this.set.add(fn);
    return () => this.set.delete(fn);
  }
  emit(...args: A): void {
    for (const fn of [...this.set]) {
      try {
        fn(...args);
      } catch (err) {
        console.error("bridge-client: listener threw", err);
      }
    }
  }
}

export type SubscriptionState = "subscribing" | "subscribed" | "unsubscribed";

/**
 * One channel of a BridgeClient. `ready` settles on the bridge's first answer: the `subscribed`
 * frame, or the error refusing it (then `state` is `unsubscribed` and `error` says why). `E` is
 * the events it delivers: narrowed by the channel's namespace when that is typed (see
 * channels.ts; `client.subscribe("circles/x")` gives circle events only).
 */
export class Subscription<E extends BridgeEvent = BridgeEvent> {
  private _state: SubscriptionState = "subscribing";
  private _error: BridgeError | undefined;
  /** Resolves with the bridge's first `subscribed` frame; rejects with the refusal (a BridgeError). */
  readonly ready: Promise<SubscribedFrame>;
  private settle!: { resolve: (f: SubscribedFrame) => void; reject: (e: Error) => void };
  private settled = false;
  /** @internal whether `ready` settled */
  get isSettled(): boolean {
    return this.settled;
  }
  /** @internal */ epoch: string | undefined = undefined;
  /** @internal */ offset = 0;
  /** @internal whether `since` was asked on the current socket */ askedSince = false;
  /** @internal */ acked = false;
  /**
   * @internal Set by a `subscribed` with `recovered:false` in the same epoch: the next event's
   * offset tells where the retained history starts again. Otherwise offsets legitimately skip
   * (this socket's own messages take offsets but are not echoed), so jumps are not gaps.
   */
  expectGap = false;
  private readonly handlers = new Map<string, Set<(data: any, event: BridgeEvent) => void>>();
  /** Types dropped for not being the channel's (typed channels), each logged once. */
  private readonly dropped = new Set<string>();
  /** @internal */ readonly eventL = new Listeners<[BridgeEvent]>();
  /** @internal */ readonly stateL = new Listeners<[SubscriptionState]>();
  /** @internal */ readonly subscribedL = new Listeners<[SubscribedFrame]>();
  /** @internal */ readonly recoveredL = new Listeners<[SubscribedFrame]>();
  /** @internal */ readonly gapL = new Listeners<[GapInfo]>();
  /** @internal */ readonly errorL = new Listeners<[BridgeError]>();

  /** @internal */
  constructor(
    readonly channel: string,
    private readonly client: BridgeClient,
  ) {
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.ready.catch(() => undefined); // a refusal nobody awaits is not an unhandled rejection
  }

  get state(): SubscriptionState {
    return this._state;
  }
  /** Why the subscription ended, if the bridge refused it. */
  get error(): BridgeError | undefined {
    return this._error;
  }
  /** Epoch + last offset seen, once subscribed. */
  get position(): ChannelPosition | undefined {
    return this.epoch === undefined ? undefined : { epoch: this.epoch, offset: this.offset };
  }

  /**
   * Events of one type on this channel (known types typed, custom ones raw JSON). On a typed
   * channel only the types it carries are accepted, and custom ones only where it allows them.
   */
  on<K extends KnownEventType & Extract<E, { custom: false }>["type"]>(type: K, handler: (data: EventPayloads[K], event: Extract<E, { type: K }>) => void): () => void;
  on<T extends string>(type: CustomTypeOf<E, T>, handler: (data: JsonValue, event: CustomBridgeEvent) => void): () => void;
  on(type: string, handler: (data: any, event: any) => void): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => set!.delete(handler);
  }
  /** Every event of this channel. */
  onEvent(fn: (event: E) => void): () => void {
    return this.eventL.add(fn as (event: BridgeEvent) => void);
  }
  onState(fn: (state: SubscriptionState) => void): () => void {
    return this.stateL.add(fn);
  }
  /** Every `subscribed` frame (first subscription and each resubscription after a reconnect). */
  onSubscribed(fn: (frame: SubscribedFrame) => void): () => void {
    return this.subscribedL.add(fn);
  }
  /** A resubscription with `since` that the history fully covered (`recovered:true`). */
  onRecovered(fn: (frame: SubscribedFrame) => void): () => void {
    return this.recoveredL.add(fn);
  }
  /** Offsets that were missed (not recovered, dropped by the bridge, or the channel restarted). */
  onGap(fn: (gap: GapInfo) => void): () => void {
    return this.gapL.add(fn);
  }
  /** Refusals about this channel (the subscription itself, or a message sent to it). */
  onError(fn: (err: BridgeError) => void): () => void {
    return this.errorL.add(fn);
  }

  /** Sends a client message to this channel (false when not connected). */
  send(message: Record<string, unknown>): boolean {
    return this.client.send(message, this.channel);
  }
  /** Sends a client message to this channel and resolves once the bridge accepted it. */
  publish(message: Record<string, unknown>): Promise<PublishAck> {
    return this.client.publish(message, this.channel);
  }
  /** The channel's retained events (see BridgeClient.history). */
  history(opts: { since?: number; limit?: number } = {}): Promise<HistoryAnswer> {
    return this.client.history(this.channel, opts);
  }
  /** The channel's members (see BridgeClient.presence). */
  presence(): Promise<PresenceAnswer> {
    return this.client.presence(this.channel);
  }
  /** Leaves the channel; resolves on the bridge's `unsubscribed` (at once when not connected). */
  unsubscribe(): Promise<void> {
    return this.client.unsubscribe(this.channel);
  }

  /** @internal */
  setState(s: SubscriptionState): void {
    if (s === this._state) return;
    this._state = s;
    this.stateL.emit(s);
  }
  /** @internal */
  subscribed(frame: SubscribedFrame): void {
    this.acked = true;
    this.setState("subscribed");
    if (!this.settled) {
      this.settled = true;
      this.settle.resolve(frame);
    }
    this.subscribedL.emit(frame);
    if (frame.recovered === true) this.recoveredL.emit(frame);
  }
  /** @internal */
  ended(err: BridgeError | undefined): void {
    if (err && this._state !== "unsubscribed") this._error = err;
    this.acked = false;
    this.setState("unsubscribed");
    if (!this.settled) {
      this.settled = true;
      this.settle.reject(err ?? new BridgeError("unsubscribed", `bridge-client: ${this.channel} unsubscribed before the bridge answered`, this.channel));
    }
  }
  /** @internal */
  deliver(event: BridgeEvent): void {
    if (!channelCarries(this.channel, event.type, event.custom)) {
      // Once per type: a bridge built from another events.proto would otherwise flood the log.
      if (!this.dropped.has(event.type)) {
        this.dropped.add(event.type);
        console.warn(`bridge-client: dropped a ${event.type} event on ${this.channel}, a type its namespace does not carry (a bridge built from another events.proto?)`);
      }
      return;
    }
    const set = this.handlers.get(event.type);
    if (set) {
      for (const h of [...set]) {
        try {
          h(event.data, event);
        } catch (err) {
          console.error("bridge-client: handler threw", err);
        }
      }
    }
    this.eventL.emit(event);
  }
}

/** A frame sent that the bridge answers (or, for messages, may answer with an error). */
/** The answer to `history()`: events exactly as they were delivered, and the channel's top. */
export interface HistoryAnswer {
  type: "history";
  channel: string;
  epoch: string;
  offset: number;
  complete: boolean;
  messages: Frame[];
}

/** The answer to `presence()`. */
export interface PresenceAnswer {
  type: "presence";
  channel: string;
  connection_count: number;
  members: { identity: string; connections: number; joined_at: string }[];
}

interface Pending {
  kind: "subscribe" | "unsubscribe" | "auth" | "ping" | "message" | "history" | "presence";
  id: string;
  channel?: string;
  resolve?: (v: any) => void;
  reject?: (e: Error) => void;
  /** A message sent with its `id`: a bridge that echoes ids answers it itself (ack or error). */
  idSent?: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

// Error codes each request can be refused with (docs/protocol.md "Error codes"), for matching an
// error frame without an `id` to the request it answers.
const ERRORS_OF: Record<Pending["kind"], ReadonlySet<string>> = {
  subscribe: new Set(["invalid_channel", "invalid_since", "forbidden", "too_many_channels", "rate_limited", "invalid_json", "not_an_object", "invalid_type"]),
  unsubscribe: new Set(["invalid_channel", "not_subscribed", "rate_limited", "invalid_json", "not_an_object", "invalid_type"]),
  auth: new Set(["unauthenticated"]),
  ping: new Set(),
  history: new Set(["invalid_channel", "invalid_since", "invalid_limit", "forbidden", "rate_limited", "unavailable"]),
  presence: new Set(["invalid_channel", "forbidden", "rate_limited", "unavailable"]),
  message: new Set(["invalid_channel", "not_subscribed", "forbidden", "reserved_type", "rate_limited", "message_too_big", "too_many_channels", "invalid_json", "not_an_object", "invalid_type", "invalid_utf8"]),
};

const OPEN = 1;
const DEFAULTS = { minDelayMs: 500, maxDelayMs: 30_000, factor: 2, maxAttempts: Infinity, stopOnCodes: [...TERMINAL_CLOSE_CODES] };

export class BridgeClient {
  private readonly base: URL;
  private readonly channels = new Map<string, Subscription>();
  private readonly WS: WebSocketConstructor;
  private readonly backoff: Required<ReconnectOptions> | false;
  private readonly random: () => number;
  private readonly clientId: string | undefined;
  private ws: WebSocketLike | undefined;
  private pathChannel: string | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private attempts = 0;
  private stopped = false;
  private _state: ConnectionState = "idle";
  private _reconnects = 0;
  private _error: BridgeError | undefined;
  private _tokenRequests = 0;
  private _expiresAt: Date | undefined;
  private _identity: string | undefined;
  private token: string | undefined;
  /** The current socket's token was accepted by the bridge (an `authenticated` frame). */
  private tokenAccepted = false;
  private httpStatus: number | undefined;
  private nextId = 0;
  private pending: Pending[] = [];
  /** The bridge on this socket echoes ids, so it answers each message sent with one. */
  private echoesIds = false;
  private readonly handlers = new Map<string, Set<(data: any, event: BridgeEvent) => void>>();
  /** Types dropped for not being the channel's (typed channels), each logged once. */
  private readonly dropped = new Set<string>();
  private readonly anyEvent = new Listeners<[BridgeEvent]>();
  private readonly stateL = new Listeners<[StateChange]>();
  private readonly subscribedL = new Listeners<[SubscribedFrame]>();
  private readonly gapL = new Listeners<[GapInfo]>();
  private readonly closeL = new Listeners<[CloseInfo]>();
  private readonly goingAwayL = new Listeners<[GoingAwayInfo]>();
  private readonly frameL = new Listeners<[Frame]>();
  private readonly errorL = new Listeners<[BridgeError]>();
  private readonly authL = new Listeners<[{ identity: string; expiresAt: Date | undefined }]>();
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];

  constructor(private readonly options: BridgeClientOptions) {
    const url = new URL(options.url);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    const m = /^\/ws\/(.+?)\/?$/.exec(url.pathname);
    const channels = [...(m ? [decodeURIComponent(m[1])] : []), ...(options.channels ?? [])];
    this.clientId = options.clientId ?? url.searchParams.get("client") ?? undefined;
    this.token = options.token ?? url.searchParams.get("token") ?? undefined;
    url.pathname = "/";
    url.search = "";
    url.hash = "";
    this.base = url;
    for (const ch of channels) if (!this.channels.has(ch)) this.channels.set(ch, new Subscription(ch, this));
    for (const [ch, pos] of Object.entries(options.resumeFrom ?? {})) {
      const st = this.channels.get(ch);
      if (st) Object.assign(st, { epoch: pos.epoch, offset: pos.offset });
    }
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new Error("bridge-client: no WebSocket implementation; pass options.WebSocket (e.g. `ws`)");
    this.WS = maybeShared(WS, this.base.toString(), options.shared);
    this.backoff = options.reconnect === false ? false : { ...DEFAULTS, ...(options.reconnect ?? {}) };
    this.random = options.random ?? Math.random;
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  get state(): ConnectionState {
    return this._state;
  }
  get isConnected(): boolean {
    return this._state === "open";
  }
  /** Number of reconnection attempts since `connect()`. */
  get reconnects(): number {
    return this._reconnects;
  }
  /** Why the client stopped for good (a terminal close or refusal), once it did. */
  get error(): BridgeError | undefined {
    return this._error;
  }
  /** How many times `getToken` was called. */
  get tokenRequests(): number {
    return this._tokenRequests;
  }
  /** When the bridge will close this connection 4001 (`authenticated.expires_at`), with auth on. */
  get expiresAt(): Date | undefined {
    return this._expiresAt;
  }
  /** The identity the bridge authenticated (the token's `sub`). */
  get identity(): string | undefined {
    return this._identity;
  }

  /**
   * Opens the socket. Resolves once it is open and every channel is subscribed; rejects if the
   * client stops for good first (close(), a terminal close, maxAttempts).
   */
  connect(): Promise<void> {
    if (this.stopped) return Promise.reject(this._error ?? new BridgeError("closed", "bridge-client: closed"));
    const p = this.ready();
    if (this._state === "idle") this.open();
    return p;
  }

  /** Resolves when the socket is open and every channel acknowledged (immediately if so now). */
  ready(): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    if (this.stopped) return Promise.reject(this._error ?? new BridgeError("closed", "bridge-client: closed"));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Closes for good: no more reconnects. */
  close(code = 1000, reason = "client closed"): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    const ws = this.ws;
    this.detach();
    if (ws) safeClose(ws, code, reason);
    this.setState("closed");
    const err = new BridgeError("closed", "bridge-client: closed");
    this.failPending(err);
    for (const sub of this.channels.values()) sub.ended(sub.isSettled ? undefined : err);
    this.failWaiters(err);
  }

  /** Drops the current socket and reconnects at once, resuming every channel. */
  reconnect(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.detach();
    if (ws) safeClose(ws, 4000, "client reconnect");
    this._reconnects++;
    this.open();
  }

  // ---------------------------------------------------------------------------------------------
  // Channels

  /** The channels of this client. */
  get channelNames(): string[] {
    return [...this.channels.keys()];
  }

  /** The subscription of a channel of this client (undefined when it has none). */
  subscription<C extends string>(channel: C): Subscription<ChannelEvent<C>> | undefined {
    return this.channels.get(channel) as Subscription<any> | undefined;
  }

  /**
   * Adds a channel (subscribing now when connected, else on connect) and returns its
   * Subscription; the same one when the channel is already there. `since` (+ `epoch`) replays
   * what followed; a ChannelPosition ({epoch, offset}) is accepted too.
   */
  subscribe<C extends string>(channel: C, from?: SubscribeOptions | ChannelPosition): Subscription<ChannelEvent<C>> {
    const have = this.channels.get(channel);
    if (have) return have as Subscription<any>;
    const sub = new Subscription(channel, this);
    this.channels.set(channel, sub);
    if (from) {
      const since = "offset" in from ? from.offset : from.since;
      if (since !== undefined) {
        sub.offset = since;
        // Without an epoch, an empty string: the bridge takes `since` in the channel's epoch.
        sub.epoch = from.epoch ?? "";
      }
    }
    if (this.stopped) sub.ended(this._error ?? new BridgeError("closed", "bridge-client: closed", channel, "subscribe"));
    else if (this.ws && this.ws.readyState === OPEN && this._state === "open") this.sendSubscribe(channel);
    return sub as Subscription<any>;
  }

  /** Leaves a channel; resolves on the bridge's `unsubscribed` (at once when not connected). */
  unsubscribe(channel: string): Promise<void> {
    const sub = this.channels.get(channel);
    if (!sub) return Promise.resolve();
    this.channels.delete(channel);
    for (const p of this.pending) if (p.kind === "subscribe" && p.channel === channel) p.channel = undefined;
    sub.ended(undefined);
    if (!this.ws || this.ws.readyState !== OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.request({ type: "unsubscribe", channel }, { kind: "unsubscribe", channel, resolve: () => resolve(), reject });
    });
  }

  /** Where each channel stands (epoch + last offset), for persisting and `resumeFrom`. */
  positions(): Record<string, ChannelPosition> {
    const out: Record<string, ChannelPosition> = {};
    for (const [ch, st] of this.channels) if (st.epoch !== undefined) out[ch] = { epoch: st.epoch, offset: st.offset };
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  /**
   * Sends a client message (any JSON object whose `type` is not reserved). With several channels
   * on the socket, name one (argument or `channel` field). Returns false when not connected. A
   * refusal reaches `onError` (and the channel's subscription), matched to this message.
   */
  send(message: Record<string, unknown>, channel?: string): boolean {
    const frame = this.messageFrame(message, channel);
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.request(frame, { kind: "message", channel: frame.channel as string | undefined ?? this.soleChannel() });
    return true;
  }

  /**
   * Sends a client message and resolves once the bridge accepted it: on its `ack` for the
   * message's `id` (bridges that send acks, with the offset), or else when the bridge answers a
   * `ping` sent right after it with no error in between. Rejects with the refusal (a BridgeError).
   * The message carries an `id` field (bridges without acks relay it to other subscribers).
   */
  publish(message: Record<string, unknown>, channel?: string): Promise<PublishAck> {
    const frame = this.messageFrame(message, channel);
    if (!this.ws || this.ws.readyState !== OPEN) return Promise.reject(new BridgeError("not_connected", "bridge-client: not connected", channel, "message"));
    const ch = (frame.channel as string | undefined) ?? this.soleChannel();
    return new Promise((resolve, reject) => {
      this.request(frame, { kind: "message", channel: ch, resolve, reject }, true);
      // The barrier: the bridge answers frames in order, so the pong means no error came for it.
      this.request({ type: "ping" }, { kind: "ping" });
    });
  }

  /**
   * The channel's retained events after `since` (default 0), at most `limit` (default and cap: the
   * namespace's history size), read over this socket; any channel the connection may read.
   * Rejects with the refusal (a BridgeError).
   */
  history(channel: string, opts: { since?: number; limit?: number } = {}): Promise<HistoryAnswer> {
    return this.ask({ type: "history", channel, ...(opts.since !== undefined ? { since: opts.since } : {}), ...(opts.limit !== undefined ? { limit: opts.limit } : {}) }, "history", channel) as Promise<HistoryAnswer>;
  }

  /** The channel's members (presence namespaces), read over this socket. */
  presence(channel: string): Promise<PresenceAnswer> {
    return this.ask({ type: "presence", channel }, "presence", channel) as Promise<PresenceAnswer>;
  }

  private ask(frame: Record<string, unknown>, kind: "history" | "presence", channel: string): Promise<unknown> {
    if (!this.ws || this.ws.readyState !== OPEN) return Promise.reject(new BridgeError("not_connected", "bridge-client: not connected", channel, kind));
    return new Promise((resolve, reject) => {
      this.request(frame, { kind, channel, resolve, reject });
    });
  }

  /** Sends a JSON `ping` and resolves with the round-trip time (ms) when the `pong` arrives. */
  ping(timeoutMs = 5000): Promise<number> {
    const start = Date.now();
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== OPEN) {
        reject(new BridgeError("not_connected", "bridge-client: not connected", undefined, "ping"));
        return;
      }
      const entry: Pending = {
        kind: "ping",
        id: "",
        resolve: () => {
          clearTimeout(t);
          resolve(Date.now() - start);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        const i = this.pending.indexOf(entry);
        if (i >= 0) this.pending.splice(i, 1);
        reject(new Error(`bridge-client: no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.request({ type: "ping" }, entry);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Listening (each returns its unsubscribe function)

  /** Events of one type: known types get the generated message, others (custom) their raw JSON. */
  on<K extends KnownEventType>(type: K, handler: (data: EventPayloads[K], event: BridgeEvent & { type: K }) => void): () => void;
  on(type: string, handler: (data: JsonValue, event: CustomBridgeEvent) => void): () => void;
  on(type: string, handler: (data: any, event: any) => void): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => set!.delete(handler);
  }
  /** Every event (known, custom and relayed client messages). */
  onEvent(fn: (event: BridgeEvent) => void): () => void {
    return this.anyEvent.add(fn);
  }
  onState(fn: (change: StateChange) => void): () => void {
    return this.stateL.add(fn);
  }
  onSubscribed(fn: (frame: SubscribedFrame) => void): () => void {
    return this.subscribedL.add(fn);
  }
  /** Offsets that were missed (not recovered, or the channel restarted). */
  onGap(fn: (gap: GapInfo) => void): () => void {
    return this.gapL.add(fn);
  }
  onClose(fn: (info: CloseInfo) => void): () => void {
    return this.closeL.add(fn);
  }
  /**
   * The bridge is shutting down (its `reconnect` frame, just before the close 1001): the reason,
   * and the resume positions it sent, which the next connection resubscribes from.
   */
  onGoingAway(fn: (info: GoingAwayInfo) => void): () => void {
    return this.goingAwayL.add(fn);
  }
  /**
   * The bridge's refusals (error frames, matched to the request they answer when possible) and
   * the client's terminal failures (a terminal close, a refused token), each reported once.
   */
  onError(fn: (err: BridgeError) => void): () => void {
    return this.errorL.add(fn);
  }
  /** Each `authenticated` frame: the identity and the deadline of the token now in use. */
  onAuthenticated(fn: (info: { identity: string; expiresAt: Date | undefined }) => void): () => void {
    return this.authL.add(fn);
  }
  /** Every frame as received, control frames included. */
  onFrame(fn: (frame: Frame) => void): () => void {
    return this.frameL.add(fn);
  }

  // ---------------------------------------------------------------------------------------------
  // Internals

  /** Open, and every channel's subscription acknowledged by the bridge. */
  get isSubscribed(): boolean {
    return this.isReady();
  }

  private isReady(): boolean {
    return this._state === "open" && [...this.channels.values()].every((c) => c.acked);
  }

  private soleChannel(): string | undefined {
    return this.channels.size === 1 ? [...this.channels.keys()][0] : undefined;
  }

  private messageFrame(message: Record<string, unknown>, channel?: string): Record<string, unknown> {
    const frame: Record<string, unknown> = { ...message };
    if (channel !== undefined) frame.channel = channel;
    else if (frame.channel === undefined && this.channels.size > 1) {
      throw new Error("bridge-client: several channels on this socket: send(message, channel)");
    }
    return frame;
  }

  private setState(state: ConnectionState, delayMs?: number): void {
    if (state === this._state && delayMs === undefined) return;
    const previous = this._state;
    this._state = state;
    this.stateL.emit({ state, previous, reconnects: this._reconnects, delayMs });
  }

  private failWaiters(err: Error): void {
    const w = this.readyWaiters;
    this.readyWaiters = [];
    for (const x of w) x.reject(err);
  }

  private failPending(err: Error): void {
    const p = this.pending;
    this.pending = [];
    for (const x of p) {
      clearTimeout(x.timer);
      x.reject?.(err);
    }
  }

  private checkReady(): void {
    if (!this.isReady() || this.readyWaiters.length === 0) return;
    const w = this.readyWaiters;
    this.readyWaiters = [];
    for (const x of w) x.resolve();
  }

  private detach(): void {
    const ws = this.ws;
    this.ws = undefined;
    this.pathChannel = undefined;
    clearTimeout(this.refreshTimer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = null;
      ws.onclose = null;
    }
    // What was in flight on that socket gets no answer: subscriptions are sent again on the next
    // one; pings, refreshes and unconfirmed messages fail.
    const lost = this.pending;
    this.pending = [];
    this.echoesIds = false;
    for (const p of lost) {
      clearTimeout(p.timer);
      if (p.kind !== "subscribe") p.reject?.(new BridgeError("connection_lost", "bridge-client: connection lost before the bridge answered", p.channel, p.kind));
    }
    for (const sub of this.channels.values()) {
      sub.acked = false;
      if (sub.state === "subscribed") sub.setState("subscribing");
    }
  }

  /** Stops for good, reporting why once. */
  private fail(err: BridgeError, close?: Omit<CloseInfo, "willReconnect">): void {
    if (this.stopped) return;
    this.stopped = true;
    this._error = err;
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    const ws = this.ws;
    this.detach();
    if (ws) safeClose(ws, 1000, "client stopped");
    if (close) this.closeL.emit({ ...close, willReconnect: false });
    this.errorL.emit(err);
    for (const sub of this.channels.values()) sub.ended(err);
    this.setState("closed");
    this.failWaiters(err);
  }

  private open(): void {
    this.setState(this._state === "idle" || this._state === "connecting" ? "connecting" : "reconnecting");
    const getToken = this.options.getToken;
    if (!getToken) return this.openWith(this.token);
    let got: string | Promise<string>;
    this._tokenRequests++;
    try {
      got = getToken();
    } catch (err) {
      return this.tokenFailed(err);
    }
    Promise.resolve(got).then(
      (token) => {
        if (this.stopped || this.ws) return;
        this.token = token;
        this.openWith(token);
      },
      (err) => this.tokenFailed(err),
    );
  }

  /** getToken threw before a connection: a failed attempt (retried with backoff). */
  private tokenFailed(err: unknown): void {
    if (this.stopped) return;
    this.errorL.emit(new BridgeError("token_error", `bridge-client: getToken failed: ${err instanceof Error ? err.message : String(err)}`));
    this.handleClose(1006, "getToken failed");
  }

  private openWith(token: string | undefined): void {
    const names = [...this.channels.keys()];
    const tokenInFrame = token !== undefined && this.options.tokenTransport === "frame";
    const usePath = !this.options.multiplex && !this.options.shared && !tokenInFrame && names.length === 1;
    const url = new URL(this.base.toString());
    url.pathname = usePath ? `/ws/${names[0]}` : "/ws";
    if (token !== undefined && !tokenInFrame) url.searchParams.set("token", token);
    if (this.clientId !== undefined) url.searchParams.set("client", this.clientId);
    for (const st of this.channels.values()) {
      st.acked = false;
      st.askedSince = false;
      st.expectGap = false;
    }
    if (usePath) {
      const st = this.channels.get(names[0])!;
      if (st.epoch !== undefined) {
        url.searchParams.set("since", String(st.offset));
        if (st.epoch !== "") url.searchParams.set("epoch", st.epoch);
        st.askedSince = true;
      }
      // Ask for the `subscribed` frame (epoch + offset) that a path subscription sends only on request.
      url.searchParams.set("ack", "1");
    }
    this.tokenAccepted = false;
    this.httpStatus = undefined;
    this.pending = [];
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url.toString()) as WebSocketLike;
    } catch (err) {
      // Bad URL and the like: nothing to retry.
      this.fail(new BridgeError("invalid_url", err instanceof Error ? err.message : String(err)));
      return;
    }
    this.ws = ws;
    this.pathChannel = usePath ? names[0] : undefined;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      if (tokenInFrame) this.request({ type: "auth", token }, { kind: "auth" });
      for (const ch of this.channels.keys()) if (ch !== this.pathChannel) this.sendSubscribe(ch);
      this.setState("open");
      this.checkReady();
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (this.ws !== ws) return;
      // The protocol only uses text frames; binary ones (Buffer/ArrayBuffer/Blob) are ignored.
      if (typeof ev.data === "string") this.handleText(ev.data);
    };
    ws.onerror = (ev: { message?: unknown; error?: unknown }) => {
      // Node's `ws` tells why an upgrade failed ("Unexpected server response: 404"); browsers do not.
      const text = typeof ev?.message === "string" ? ev.message : ev?.error instanceof Error ? ev.error.message : "";
      const m = /Unexpected server response: (\d{3})/.exec(text);
      if (m && this.ws === ws) this.httpStatus = Number(m[1]);
      /* a close event follows */
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.ws !== ws) return;
      const accepted = this.tokenAccepted;
      const path = this.pathChannel;
      this.detach();
      this.handleClose(ev.code ?? 1006, ev.reason ?? "", accepted, path);
    };
  }

  private sendSubscribe(channel: string): void {
    const st = this.channels.get(channel)!;
    const frame: Record<string, unknown> = { type: "subscribe", channel };
    if (st.epoch !== undefined) {
      frame.since = st.offset;
      if (st.epoch !== "") frame.epoch = st.epoch;
      st.askedSince = true;
    }
    this.request(frame, { kind: "subscribe", channel });
  }

  /**
   * Sends a frame the bridge answers, queued for matching; returns its id. Control frames carry
   * the `id` (bridges that echo it let answers be matched exactly); client messages only with
   * `withId` (publish()), since a bridge without acks relays every field to other subscribers.
   */
  private request(frame: Record<string, unknown>, p: Omit<Pending, "id"> & { id?: string }, withId = false): string {
    const entry = p as Pending;
    entry.id = String(++this.nextId);
    if (p.kind !== "message" || withId) frame.id = entry.id;
    if (p.kind === "message" && withId) entry.idSent = true;
    this.pending.push(entry);
    if (!this.sendRaw(frame)) {
      const i = this.pending.indexOf(entry);
      if (i >= 0) this.pending.splice(i, 1);
      entry.reject?.(new BridgeError("not_connected", "bridge-client: not connected", p.channel, p.kind));
    }
    return entry.id;
  }

  private sendRaw(frame: Record<string, unknown>): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(stringifyFrame(frame));
    return true;
  }

  private handleClose(code: number, reason: string, tokenWasAccepted = false, pathChannel?: string): void {
    const b = this.backoff;
    if (this.stopped) {
      this.closeL.emit({ code, reason, willReconnect: false });
      return;
    }
    const status = this.httpStatus;
    const info = { code, reason, ...(status !== undefined ? { httpStatus: status } : {}) };
    if (status !== undefined && isTerminalHttpStatus(status)) {
      return this.fail(new BridgeError(`http_${status}`, `bridge-client: upgrade refused with HTTP ${status}`, pathChannel, undefined, code), info);
    }
    // A token that expired on an open connection is not a refusal: with getToken, fetch another.
    const expired = code === 4001 && tokenWasAccepted && this.options.getToken !== undefined;
    const stopCodes = b ? b.stopOnCodes : TERMINAL_CLOSE_CODES;
    if (!expired && stopCodes.includes(code)) {
      // A refusal of the path's channel names it (the subscription's error too).
      const ch = code === 4003 || code === 4004 || code === 4400 ? pathChannel : undefined;
      return this.fail(new BridgeError(`close_${code}`, `bridge-client: closed with ${code}${reason ? ` (${reason})` : ""}`, ch, undefined, code), info);
    }
    if (!b || this.attempts >= b.maxAttempts) {
      return this.fail(new BridgeError(`close_${code}`, `bridge-client: closed with ${code}${reason ? ` (${reason})` : ""}${b ? `; gave up after ${this.attempts} attempts` : ""}`, undefined, undefined, code), info);
    }
    this.closeL.emit({ ...info, willReconnect: true });
    // Full jitter: uniform in [0, min(max, min * factor^attempt)].
    const bound = Math.min(b.maxDelayMs, b.minDelayMs * Math.pow(b.factor, this.attempts));
    const delay = expired && this.attempts === 0 ? 0 : Math.floor(this.random() * bound);
    this.attempts++;
    this.setState("reconnecting", delay);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this._reconnects++;
      this.open();
    }, delay);
  }

  private handleText(text: string): void {
    let frame: Frame;
    try {
      const parsed: unknown = JSON.parse(text);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return;
      frame = parsed as Frame;
    } catch {
      return;
    }
    if (typeof frame.type !== "string") return;
    this.frameL.emit(frame);
    switch (frame.type) {
      case "ping":
        if (this.options.autoPong !== false) this.sendRaw({ type: "pong" });
        return;
      case "pong":
        this.answer(frame, (p) => p.kind === "ping")?.resolve?.(undefined);
        return;
      case "subscribed":
        this.handleSubscribed(frame as SubscribedFrame);
        return;
      case "unsubscribed":
        this.answer(frame, (p) => p.kind === "unsubscribe" && p.channel === frame.channel)?.resolve?.(undefined);
        return;
      case "authenticated":
        this.handleAuthenticated(frame);
        return;
      case "ack": {
        if (frame.sender !== undefined) break; // a client message someone typed "ack"
        const p = this.answer(frame, (x) => x.kind === "message" && x.id === frame.id);
        p?.resolve?.({ id: p.id, channel: p.channel, offset: typeof frame.offset === "number" ? frame.offset : undefined, confirmedBy: "ack" } satisfies PublishAck);
        return;
      }
      case "history":
      case "presence": {
        if (frame.sender !== undefined) break; // not an answer
        const kind = frame.type;
        this.answer(frame, (p) => p.kind === kind && p.channel === frame.channel)?.resolve?.(frame);
        return;
      }
      case "gap":
        this.handleGapFrame(frame);
        return;
      case "reconnect":
        if (frame.sender !== undefined) break; // a client message someone typed "reconnect"
        this.handleReconnectFrame(frame);
        return;
      case "error":
        // The bridge's own error frames have no offset; `error` events published to a channel do.
        if (typeof frame.offset !== "number") {
          this.handleErrorFrame(frame);
          return;
        }
    }
    if (CONTROL_TYPES.has(frame.type)) return;
    const channel = typeof frame.channel === "string" ? frame.channel : "";
    const st = channel ? this.channels.get(channel) : undefined;
    if (st && typeof frame.offset === "number") {
      if (frame.offset <= st.offset) return; // already seen (replay overlap)
      if (st.expectGap) {
        st.expectGap = false;
        if (frame.offset > st.offset + 1) this.emitGap(st, { channel, from: st.offset + 1, to: frame.offset - 1, epochChanged: false });
      }
      st.offset = frame.offset;
    }
    let event: BridgeEvent;
    try {
      event = decodeEvent(frame);
    } catch (err) {
      console.error(`bridge-client: cannot decode ${frame.type} frame`, err);
      return;
    }
    const set = this.handlers.get(event.type);
    if (set) {
      for (const h of [...set]) {
        try {
          h(event.data, event);
        } catch (err) {
          console.error("bridge-client: handler threw", err);
        }
      }
    }
    st?.deliver(event);
    this.anyEvent.emit(event);
  }

  /**
   * Finds the pending request a frame answers and removes it: by the frame's `id` when the bridge
   * echoes ids, else the first pending one that `match`es. The bridge answers frames in order, so
   * the messages sent before the answered request were accepted (no error came for them); other
   * requests before it that got no answer were refused silently (a rate-limit burst).
   */
  private answer(frame: Frame, match: (p: Pending) => boolean): Pending | undefined {
    let i = typeof frame.id === "string" ? this.pending.findIndex((p) => p.id === frame.id) : -1;
    const byId = i >= 0;
    if (i < 0) i = this.pending.findIndex(match);
    if (i < 0) return undefined;
    const p = this.pending[i];
    clearTimeout(p.timer);
    if (byId) {
      // Answers that echo ids may come out of order (a bridge with a broker answers a subscribe,
      // and acks a message, once the broker has): only earlier messages sent without an id, which
      // get no answer when accepted, are settled; the rest wait for their own answers.
      this.echoesIds = true;
      this.pending.splice(i, 1);
      for (let j = i - 1; j >= 0; j--) {
        const x = this.pending[j];
        if (x.kind === "message" && !this.settleEarlierMessage(x)) this.pending.splice(j, 1);
      }
      return p;
    }
    const before = this.pending.splice(0, i + 1);
    before.pop();
    const keep = before.filter((x) => {
      if (x.kind === "message") return this.settleEarlierMessage(x);
      this.settleUnanswered(x);
      return false;
    });
    this.pending.unshift(...keep);
    return p;
  }

  /**
   * A message sent before a frame that got its answer: accepted, so settled as "barrier", unless
   * the bridge echoes ids and it carried one; then its own ack or error is still to come (or a
   * timeout). Returns whether it stays pending.
   */
  private settleEarlierMessage(x: Pending): boolean {
    if (this.echoesIds && x.idSent) {
      this.awaitOwnAnswer(x);
      return true;
    }
    this.settleUnanswered(x);
    return false;
  }

  /** A message whose later frame was answered first: its own ack or error comes, or a timeout. */
  private awaitOwnAnswer(p: Pending): void {
    if (p.timer !== undefined) return;
    const ms = this.options.publishTimeoutMs ?? 10_000;
    p.timer = setTimeout(() => {
      const i = this.pending.indexOf(p);
      if (i < 0) return;
      this.pending.splice(i, 1);
      p.reject?.(new BridgeError("timeout", `bridge-client: no answer to the message within ${ms} ms`, p.channel, "message"));
    }, ms);
  }

  private settleUnanswered(p: Pending): void {
    if (p.kind === "message") {
      p.resolve?.({ id: p.id, channel: p.channel, offset: undefined, confirmedBy: "barrier" } satisfies PublishAck);
    } else if (p.kind === "subscribe") {
      // Refused without an answer (the bridge answers only the first refusal of a rate-limit burst).
      const sub = p.channel !== undefined ? this.channels.get(p.channel) : undefined;
      if (sub && !sub.acked) {
        const err = new BridgeError("rate_limited", `bridge-client: the bridge did not answer the subscribe to ${p.channel} (rate limited)`, p.channel, "subscribe");
        this.channels.delete(p.channel!);
        sub.errorL.emit(err);
        sub.ended(err);
        this.errorL.emit(err);
      }
    } else {
      p.reject?.(new BridgeError("no_answer", `bridge-client: the bridge did not answer the ${p.kind} frame (rate limited?)`, p.channel, p.kind));
    }
  }

  private handleErrorFrame(frame: Frame): void {
    const data = (frame.data && typeof frame.data === "object" && !Array.isArray(frame.data) ? frame.data : {}) as Record<string, JsonValue>;
    const code = typeof data.code === "string" ? data.code : "error";
    const message = typeof data.message === "string" ? data.message : "";
    // By id when echoed; else the first pending request this code can answer. Messages before it
    // cannot have had this error (they would have been found first), so they were accepted.
    let p: Pending | undefined;
    if (typeof frame.id === "string" && this.pending.some((x) => x.id === frame.id)) {
      p = this.answer(frame, () => false);
    } else {
      const i = this.pending.findIndex((x) => ERRORS_OF[x.kind].has(code));
      if (i >= 0) {
        p = this.pending[i];
        clearTimeout(p.timer);
        const keep = this.pending.slice(0, i).filter((x) => x.kind !== "message" || this.settleEarlierMessage(x));
        this.pending = [...keep, ...this.pending.slice(i + 1)];
      }
    }
    const channel = p?.channel ?? (typeof frame.channel === "string" ? frame.channel : undefined);
    const err = new BridgeError(code, message, channel, p?.kind);
    if (p?.kind === "auth") {
      // A refreshed (or first, frame-transported) token refused: terminal, reported once.
      this.fail(err, { code: 4001, reason: message });
      return;
    }
    p?.reject?.(err);
    if (p?.kind === "subscribe" && channel) {
      const sub = this.channels.get(channel);
      if (sub) {
        this.channels.delete(channel);
        sub.errorL.emit(err);
        sub.ended(err);
      }
    } else if (channel) {
      this.channels.get(channel)?.errorL.emit(err);
    }
    this.errorL.emit(err);
    this.checkReady();
  }

  private handleAuthenticated(frame: Frame): void {
    this.answer(frame, (p) => p.kind === "auth");
    this.tokenAccepted = true;
    this._identity = typeof frame.identity === "string" ? frame.identity : undefined;
    const exp = typeof frame.expires_at === "string" ? new Date(frame.expires_at) : undefined;
    this._expiresAt = exp && !Number.isNaN(exp.getTime()) ? exp : undefined;
    this.authL.emit({ identity: this._identity ?? "", expiresAt: this._expiresAt });
    this.scheduleRefresh();
  }

  /** With getToken, fetch a new token before the bridge's deadline and send it in-band. */
  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    const getToken = this.options.getToken;
    if (!getToken || !this._expiresAt) return;
    const left = this._expiresAt.getTime() - Date.now();
    const margin = this.options.refreshMarginMs ?? Math.min(60_000, Math.max(1000, left / 5));
    const ws = this.ws;
    this.refreshTimer = setTimeout(() => {
      if (this.stopped || this.ws !== ws) return;
      this._tokenRequests++;
      Promise.resolve()
        .then(() => getToken())
        .then(
          (token) => {
            if (this.stopped || this.ws !== ws) return;
            this.token = token;
            this.request({ type: "auth", token }, { kind: "auth" });
          },
          (err) => {
            if (this.stopped || this.ws !== ws) return;
            this.errorL.emit(new BridgeError("token_error", `bridge-client: getToken failed: ${err instanceof Error ? err.message : String(err)}`, undefined, "auth"));
            // Try again halfway to the deadline; past it, the bridge closes 4001 and the
            // reconnection asks getToken again.
            const rest = (this._expiresAt?.getTime() ?? 0) - Date.now();
            if (rest > 2000) {
              this.refreshTimer = setTimeout(() => this.scheduleRefresh(), rest / 2);
            }
          },
        );
    }, Math.max(0, left - margin));
  }

  /** `{"type":"gap","channel","from","to"}`: events the bridge dropped from this socket's queue. */
  private handleGapFrame(frame: Frame): void {
    const channel = typeof frame.channel === "string" ? frame.channel : "";
    const from = typeof frame.from === "number" ? frame.from : undefined;
    const to = typeof frame.to === "number" ? frame.to : undefined;
    const st = this.channels.get(channel);
    if (st && to !== undefined && to > st.offset) st.offset = to;
    const gap = { channel, from: from ?? (st ? st.offset + 1 : 0), to, epochChanged: false };
    if (st) this.emitGap(st, gap);
    else this.gapL.emit(gap);
  }

  /**
   * `{"type":"reconnect","positions":{...}}`: the bridge's position of each channel is exact for
   * this socket (it counts the offsets of this client's own messages, which are never echoed),
   * so it replaces the client's for every channel the bridge had acknowledged.
   */
  private handleReconnectFrame(frame: Frame): void {
    const raw = frame.positions;
    const applied: Record<string, ChannelPosition> = {};
    if (raw && typeof raw === "object" && !Array.isArray(raw)) {
      for (const [channel, pos] of Object.entries(raw)) {
        const st = this.channels.get(channel);
        if (!st || !st.acked || !pos || typeof pos !== "object" || Array.isArray(pos)) continue;
        const { epoch, offset } = pos as Record<string, JsonValue>;
        if (typeof epoch !== "string" || typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) continue;
        st.epoch = epoch;
        st.offset = offset;
        applied[channel] = { epoch, offset };
      }
    }
    this.goingAwayL.emit({ reason: typeof frame.reason === "string" ? frame.reason : "", positions: applied });
  }

  private emitGap(st: Subscription, gap: GapInfo): void {
    st.gapL.emit(gap);
    this.gapL.emit(gap);
  }

  private handleSubscribed(frame: SubscribedFrame): void {
    this.answer(frame, (p) => p.kind === "subscribe" && p.channel === frame.channel);
    const st = this.channels.get(frame.channel);
    if (st) {
      const epoch = String(frame.epoch ?? "");
      const latest = typeof frame.offset === "number" ? frame.offset : 0;
      if (st.askedSince && st.epoch !== undefined && st.epoch !== "") {
        if (st.epoch !== epoch) {
          // The channel restarted: its offsets begin again; what happened before is unknown.
          this.emitGap(st, { channel: frame.channel, from: st.offset + 1, to: undefined, epochChanged: true });
          st.offset = frame.recovered ? 0 : latest;
        } else if (!frame.recovered) {
          // Same epoch, not recovered: what is still retained follows anyway; the next event's
          // offset (replayed or live) tells the exact gap.
          st.expectGap = true;
        }
      } else if (st.askedSince && st.epoch === "") {
        // `since` without an epoch: replay in the current epoch follows.
        if (!frame.recovered) st.expectGap = true;
      } else if (st.epoch === undefined || st.epoch !== epoch) {
        st.offset = latest;
      }
      st.epoch = epoch;
      st.askedSince = false;
      // A subscription acknowledged is a connection that works: the backoff starts over.
      this.attempts = 0;
      st.subscribed(frame);
    }
    this.subscribedL.emit(frame);
    this.checkReady();
  }
}

function safeClose(ws: WebSocketLike, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    try {
      ws.close();
    } catch {
      /* already closed */
    }
  }
}
