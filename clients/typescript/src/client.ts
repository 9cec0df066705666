// BridgeClient: one WebSocket to the bridge carrying one or several channels, typed handlers,
// automatic pong, reconnect with exponential backoff + full jitter, and resume from the last
// offset + epoch of every channel. Works with the browser's WebSocket and with the `ws` package.
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

export interface ReconnectOptions {
  /** First delay's upper bound, ms (default 500). */
  minDelayMs?: number;
  /** Upper bound of any delay, ms (default 30 000). */
  maxDelayMs?: number;
  /** Growth of the bound per failed attempt (default 2). */
  factor?: number;
  /** Give up after this many consecutive failed attempts (default: never). */
  maxAttempts?: number;
  /** Close codes after which the client stops (default 4001 unauthenticated, 4003 forbidden). */
  stopOnCodes?: number[];
}

/** Where a channel's stream stands: the last offset seen in the channel's epoch. */
export interface ChannelPosition {
  epoch: string;
  offset: number;
}

export interface BridgeClientOptions {
  /**
   * The bridge: `ws://host:port` (channels from `channels`), or a channel URL
   * `ws://host:port/ws/circles/dev-team` (that channel plus `channels`). http(s) URLs are mapped
   * to ws(s).
   */
  url: string;
  channels?: string[];
  /** Token for bridges with auth on. */
  token?: string;
  /** How the token travels: `?token=` on the upgrade (default) or a first `{"type":"auth"}` frame. */
  tokenTransport?: "query" | "frame";
  /** Identity sent as `?client=` when auth is off. */
  clientId?: string;
  /** Always use `/ws` + subscribe frames, even for a single channel. */
  multiplex?: boolean;
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
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the client will try again. */
  willReconnect: boolean;
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

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Reconnections made so far (successful or not). */
  reconnects: number;
  /** For `reconnecting`: the delay before the next attempt, ms. */
  delayMs?: number;
}

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

interface ChannelState {
  epoch: string | undefined;
  offset: number;
  /** Whether `since` was asked on the current socket for this channel. */
  askedSince: boolean;
  acked: boolean;
  /**
   * Set by a `subscribed` with `recovered:false` in the same epoch: the next event's offset tells
   * where the retained history starts again. Otherwise offsets legitimately skip (this socket's
   * own messages take offsets but are not echoed), so jumps are not gaps.
   */
  expectGap: boolean;
}

const OPEN = 1;
const DEFAULTS = { minDelayMs: 500, maxDelayMs: 30_000, factor: 2, maxAttempts: Infinity, stopOnCodes: [4001, 4003] };

export class BridgeClient {
  private readonly base: URL;
  private readonly channels = new Map<string, ChannelState>();
  private readonly WS: WebSocketConstructor;
  private readonly backoff: Required<ReconnectOptions> | false;
  private readonly random: () => number;
  private ws: WebSocketLike | undefined;
  private pathChannel: string | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private attempts = 0;
  private stopped = false;
  private _state: ConnectionState = "idle";
  private _reconnects = 0;
  private readonly handlers = new Map<string, Set<(data: any, event: BridgeEvent) => void>>();
  private readonly anyEvent = new Listeners<[BridgeEvent]>();
  private readonly stateL = new Listeners<[StateChange]>();
  private readonly subscribedL = new Listeners<[SubscribedFrame]>();
  private readonly gapL = new Listeners<[GapInfo]>();
  private readonly closeL = new Listeners<[CloseInfo]>();
  private readonly frameL = new Listeners<[Frame]>();
  private readonly pongWaiters: Array<() => void> = [];
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];

  constructor(private readonly options: BridgeClientOptions) {
    const url = new URL(options.url);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    const m = /^\/ws\/(.+?)\/?$/.exec(url.pathname);
    const channels = [...(m ? [decodeURIComponent(m[1])] : []), ...(options.channels ?? [])];
    url.pathname = "/";
    url.search = "";
    url.hash = "";
    this.base = url;
    for (const ch of channels) this.addChannel(ch);
    for (const [ch, pos] of Object.entries(options.resumeFrom ?? {})) {
      const st = this.channels.get(ch);
      if (st) Object.assign(st, { epoch: pos.epoch, offset: pos.offset });
    }
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new Error("bridge-client: no WebSocket implementation; pass options.WebSocket (e.g. `ws`)");
    this.WS = WS;
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

  /**
   * Opens the socket. Resolves once it is open and every channel is subscribed; rejects if the
   * client stops for good first (close(), a 4001/4003 close, maxAttempts).
   */
  connect(): Promise<void> {
    if (this.stopped) return Promise.reject(new Error("bridge-client: closed"));
    const p = this.ready();
    if (this._state === "idle") this.open();
    return p;
  }

  /** Resolves when the socket is open and every channel acknowledged (immediately if so now). */
  ready(): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    if (this.stopped) return Promise.reject(new Error("bridge-client: closed"));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Closes for good: no more reconnects. */
  close(code = 1000, reason = "client closed"): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.detach();
    if (ws) safeClose(ws, code, reason);
    this.setState("closed");
    this.failWaiters(new Error("bridge-client: closed"));
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

  /** Adds a channel (subscribing now when connected); `from` resumes it from a known position. */
  subscribe(channel: string, from?: ChannelPosition): void {
    if (this.channels.has(channel)) return;
    const st = this.addChannel(channel);
    if (from) Object.assign(st, { epoch: from.epoch, offset: from.offset });
    if (this.ws && this.ws.readyState === OPEN) this.sendSubscribe(channel);
  }

  unsubscribe(channel: string): void {
    if (!this.channels.delete(channel)) return;
    if (this.ws && this.ws.readyState === OPEN) this.sendRaw({ type: "unsubscribe", channel });
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
   * on the socket, name one (argument or `channel` field). Returns false when not connected.
   */
  send(message: Record<string, unknown>, channel?: string): boolean {
    const frame: Record<string, unknown> = { ...message };
    if (channel !== undefined) frame.channel = channel;
    else if (frame.channel === undefined && this.channels.size > 1) {
      throw new Error("bridge-client: several channels on this socket: send(message, channel)");
    }
    return this.sendRaw(frame);
  }

  /** Sends a JSON `ping` and resolves with the round-trip time (ms) when the `pong` arrives. */
  ping(timeoutMs = 5000): Promise<number> {
    const start = Date.now();
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(t);
        resolve(Date.now() - start);
      };
      const t = setTimeout(() => {
        const i = this.pongWaiters.indexOf(done);
        if (i >= 0) this.pongWaiters.splice(i, 1);
        reject(new Error(`bridge-client: no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      if (!this.sendRaw({ type: "ping" })) {
        clearTimeout(t);
        reject(new Error("bridge-client: not connected"));
        return;
      }
      this.pongWaiters.push(done);
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
  /** Every frame as received, control frames included. */
  onFrame(fn: (frame: Frame) => void): () => void {
    return this.frameL.add(fn);
  }

  // ---------------------------------------------------------------------------------------------
  // Internals

  private addChannel(channel: string): ChannelState {
    const st: ChannelState = { epoch: undefined, offset: 0, askedSince: false, acked: false, expectGap: false };
    this.channels.set(channel, st);
    return st;
  }

  /** Open, and every channel's subscription acknowledged by the bridge. */
  get isSubscribed(): boolean {
    return this.isReady();
  }

  private isReady(): boolean {
    return this._state === "open" && [...this.channels.values()].every((c) => c.acked);
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
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = null;
      ws.onclose = null;
    }
  }

  private open(): void {
    const names = [...this.channels.keys()];
    const tokenInFrame = this.options.token !== undefined && this.options.tokenTransport === "frame";
    const usePath = !this.options.multiplex && !tokenInFrame && names.length === 1;
    const url = new URL(this.base.toString());
    url.pathname = usePath ? `/ws/${names[0]}` : "/ws";
    if (this.options.token !== undefined && !tokenInFrame) url.searchParams.set("token", this.options.token);
    if (this.options.clientId !== undefined) url.searchParams.set("client", this.options.clientId);
    for (const st of this.channels.values()) {
      st.acked = false;
      st.askedSince = false;
      st.expectGap = false;
    }
    if (usePath) {
      const st = this.channels.get(names[0])!;
      if (st.epoch !== undefined) {
        url.searchParams.set("since", String(st.offset));
        url.searchParams.set("epoch", st.epoch);
        st.askedSince = true;
      }
      // Ask for the `subscribed` frame (epoch + offset) that a path subscription sends only on request.
      url.searchParams.set("ack", "1");
    }
    this.setState(this._state === "idle" || this._state === "connecting" ? "connecting" : "reconnecting");
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url.toString()) as WebSocketLike;
    } catch (err) {
      // Bad URL and the like: nothing to retry.
      this.stopped = true;
      this.setState("closed");
      this.failWaiters(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.ws = ws;
    this.pathChannel = usePath ? names[0] : undefined;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      if (tokenInFrame) this.sendRaw({ type: "auth", token: this.options.token });
      for (const ch of this.channels.keys()) if (ch !== this.pathChannel) this.sendSubscribe(ch);
      this.setState("open");
      this.checkReady();
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (this.ws !== ws) return;
      // The protocol only uses text frames; binary ones (Buffer/ArrayBuffer/Blob) are ignored.
      if (typeof ev.data === "string") this.handleText(ev.data);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.ws !== ws) return;
      this.detach();
      this.handleClose(ev.code ?? 1006, ev.reason ?? "");
    };
  }

  private sendSubscribe(channel: string): void {
    const st = this.channels.get(channel)!;
    const frame: Record<string, unknown> = { type: "subscribe", channel };
    if (st.epoch !== undefined) {
      frame.since = st.offset;
      frame.epoch = st.epoch;
      st.askedSince = true;
    }
    this.sendRaw(frame);
  }

  private sendRaw(frame: Record<string, unknown>): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(stringifyFrame(frame));
    return true;
  }

  private handleClose(code: number, reason: string): void {
    const b = this.backoff;
    const fatal = !b || b.stopOnCodes.includes(code) || this.attempts >= b.maxAttempts;
    this.closeL.emit({ code, reason, willReconnect: !fatal && !this.stopped });
    if (this.stopped) return;
    if (fatal) {
      this.stopped = true;
      this.setState("closed");
      this.failWaiters(new Error(`bridge-client: closed with ${code}${reason ? ` (${reason})` : ""}`));
      return;
    }
    // Full jitter: uniform in [0, min(max, min * factor^attempt)].
    const bound = Math.min(b.maxDelayMs, b.minDelayMs * Math.pow(b.factor, this.attempts));
    const delay = Math.floor(this.random() * bound);
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
        this.pongWaiters.splice(0).forEach((f) => f());
        return;
      case "subscribed":
        this.handleSubscribed(frame as SubscribedFrame);
        return;
      case "unsubscribed":
        return;
      case "gap":
        this.handleGapFrame(frame);
        return;
    }
    if (CONTROL_TYPES.has(frame.type)) return;
    const channel = typeof frame.channel === "string" ? frame.channel : "";
    const st = channel ? this.channels.get(channel) : undefined;
    if (st && typeof frame.offset === "number") {
      if (frame.offset <= st.offset) return; // already seen (replay overlap)
      if (st.expectGap) {
        st.expectGap = false;
        if (frame.offset > st.offset + 1) {
          this.gapL.emit({ channel, from: st.offset + 1, to: frame.offset - 1, epochChanged: false });
        }
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
    this.anyEvent.emit(event);
  }

  /** `{"type":"gap","channel","from","to"}`: events the bridge dropped from this socket's queue. */
  private handleGapFrame(frame: Frame): void {
    const channel = typeof frame.channel === "string" ? frame.channel : "";
    const from = typeof frame.from === "number" ? frame.from : undefined;
    const to = typeof frame.to === "number" ? frame.to : undefined;
    const st = this.channels.get(channel);
    if (st && to !== undefined && to > st.offset) st.offset = to;
    this.gapL.emit({ channel, from: from ?? (st ? st.offset + 1 : 0), to, epochChanged: false });
  }

  private handleSubscribed(frame: SubscribedFrame): void {
    const st = this.channels.get(frame.channel);
    if (st) {
      const epoch = String(frame.epoch ?? "");
      const latest = typeof frame.offset === "number" ? frame.offset : 0;
      if (st.askedSince && st.epoch !== undefined) {
        if (st.epoch !== epoch) {
          // The channel restarted: its offsets begin again; what happened before is unknown.
          this.gapL.emit({ channel: frame.channel, from: st.offset + 1, to: undefined, epochChanged: true });
          st.offset = frame.recovered ? 0 : latest;
        } else if (!frame.recovered) {
          // Same epoch, not recovered: what is still retained follows anyway; the next event's
          // offset (replayed or live) tells the exact gap.
          st.expectGap = true;
        }
      } else if (st.epoch === undefined || st.epoch !== epoch) {
        st.offset = latest;
      }
      st.epoch = epoch;
      st.acked = true;
      st.askedSince = false;
      // A subscription acknowledged is a connection that works: the backoff starts over.
      this.attempts = 0;
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
