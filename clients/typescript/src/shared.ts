// One WebSocket for all the tabs of an origin (`new BridgeClient({ shared: true, ... })`).
//
// Every tab's BridgeClient keeps its whole logic (subscriptions, ids, tokens, backoff, resume) and
// talks to a *virtual* socket. One tab, the leader (elected with a Web Lock, `navigator.locks`),
// holds the real WebSocket to the bridge and routes between it and every tab's virtual sockets
// over a BroadcastChannel:
//
// - channels are reference-counted: the first tab's `subscribe` goes to the bridge; a later tab
//   joining a channel already subscribed gets its `subscribed` answer from the leader, and when it
//   resumes from an offset, the events it missed from the bridge's history (a `history` request),
//   so that it loses nothing; the last tab's `unsubscribe` goes to the bridge;
// - ids are rewritten: every frame with an `id` goes out with a leader-wide one, and the answer
//   carrying it goes back to the tab that asked, with the tab's own id;
// - events go to the tabs subscribed to their channel; frames about no channel to every tab; the
//   bridge's JSON pings are answered by the leader;
// - hand-over: when the leader tab goes, its lock is released and a waiting tab takes it; the new
//   leader announces itself, every virtual socket of the old one closes (1006), and each tab's
//   BridgeClient reconnects through the new leader with since/epoch for every channel, as after
//   any lost connection: the bridge replays what was missed.
//
// When the real socket closes (a refusal, the bridge going away), every virtual socket closes with
// the same code and reason, so each tab's client applies its terminal/retryable rules.
//
// Where Web Locks or BroadcastChannel are missing (old browsers, Node), the client uses its own
// WebSocket as without `shared`. A SharedWorker would spare the election; it needs a script URL
// served by the application, which this package does not assume (see README).
import type { WebSocketConstructor, WebSocketLike } from "./client.js";

export interface SharedOptions {
  /**
   * Tabs share a connection when they use the same key (default: the bridge's URL without its
   * query). Tabs with different tokens or identities should use different keys.
   */
  key?: string;
  /** How long a tab waits for a leader to answer before its virtual socket fails (default 5 s). */
  connectTimeoutMs?: number;
}

/** What a tab knows about the shared connection (tests and status displays). */
export interface SharedStatus {
  /** This tab holds the real WebSocket. */
  leader: boolean;
  /** This tab's id, and the leader's (once known). */
  tabId: string;
  leaderId: string | undefined;
}

type Frame = Record<string, unknown>;

// Messages on the BroadcastChannel. `to` is a tab id, or "leader".
type Wire =
  | { t: "connect"; to: "leader"; from: string; conn: string; url: string }
  | { t: "send"; to: "leader"; from: string; conn: string; data: string }
  | { t: "close"; to: "leader"; from: string; conn: string }
  | { t: "open"; to: string; conn: string; leader: string }
  | { t: "frame"; to: string; conn: string; data: string }
  | { t: "closed"; to: string; conn: string; code: number; reason: string }
  | { t: "leader"; to: "*"; leader: string };

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

let tabCounter = 0;

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Whether this environment can share (Web Locks and BroadcastChannel). */
export function canShare(): boolean {
  const g = globalThis as { navigator?: { locks?: unknown }; BroadcastChannel?: unknown };
  return typeof g.BroadcastChannel === "function" && !!g.navigator?.locks;
}

// One per key and page: the election, the channel, the virtual sockets, and (when leader) the
// router.
class Tab {
  readonly tabId = `${randomId()}#${++tabCounter}`;
  leaderId: string | undefined;
  router: Router | undefined;
  private readonly bc: BroadcastChannel;
  readonly sockets = new Map<string, VirtualSocket>();
  readonly ready: Promise<void>;
  private nextConn = 0;

  constructor(
    readonly key: string,
    readonly RealWS: WebSocketConstructor,
  ) {
    this.bc = new BroadcastChannel(`gathering-bridge:${key}`);
    this.bc.onmessage = (ev: MessageEvent) => this.onWire(ev.data as Wire);
    const locks = (navigator as unknown as { locks: LockManager }).locks;
    // While this tab lives it holds its own lock: the leader waits on it to learn the tab is gone.
    // Virtual sockets ask for the leader only once it is held (else the leader's wait on it
    // could be granted first, and the tab be taken for gone).
    this.ready = new Promise<void>((held) => {
      void locks.request(`gathering-bridge:${key}:tab:${this.tabId}`, () => {
        held();
        return new Promise<void>(() => undefined);
      });
    });
    void locks.request(`gathering-bridge:${key}:leader`, () => {
      this.router = new Router(this, this.post.bind(this));
      this.leaderId = this.tabId;
      this.post({ t: "leader", to: "*", leader: this.tabId });
      // Virtual sockets connected to the old leader are dead: they reconnect through this one.
      for (const s of this.sockets.values()) s.leaderChanged(this.tabId);
      return new Promise<void>(() => undefined); // held until the page goes
    });
  }

  newConn(): string {
    return `${this.tabId}/${++this.nextConn}`;
  }

  post(msg: Wire): void {
    // Between the leader's router and its own tab's sockets: in the page (a BroadcastChannel
    // never delivers to the object that posted), asynchronously as a real channel would.
    if (this.router && (msg.to === this.tabId || msg.to === "leader")) {
      queueMicrotask(() => (msg.to === "leader" ? this.router?.onWire(msg) : this.onWire(msg)));
      return;
    }
    this.bc.postMessage(msg);
  }

  private onWire(msg: Wire): void {
    if (msg.t === "leader") {
      this.leaderId = msg.leader;
      for (const s of this.sockets.values()) s.leaderChanged(msg.leader);
      return;
    }
    if (msg.to === "leader") {
      this.router?.onWire(msg);
      return;
    }
    if (msg.to !== this.tabId) return;
    this.sockets.get(msg.conn)?.onWire(msg);
  }

  watchTab(tabId: string, gone: () => void): void {
    const locks = (navigator as unknown as { locks: LockManager }).locks;
    // Granted once the tab's own lock is released: the tab closed (or crashed).
    void locks.request(`gathering-bridge:${this.key}:tab:${tabId}`, async () => gone());
  }
}

const tabs = new Map<string, Tab>();

function tabFor(key: string, RealWS: WebSocketConstructor): Tab {
  let t = tabs.get(key);
  if (!t) {
    t = new Tab(key, RealWS);
    tabs.set(key, t);
  }
  return t;
}

/** The shared connection's status for `key` in this page (undefined: none yet). */
export function sharedStatus(key: string): SharedStatus | undefined {
  const t = tabs.get(key);
  return t && { leader: t.router !== undefined, tabId: t.tabId, leaderId: t.leaderId };
}

/** The key tabs share a connection under for a bridge URL (its origin and path, no query). */
export function sharedKey(url: string, options: SharedOptions = {}): string {
  if (options.key) return options.key;
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

/**
 * A WebSocket constructor whose sockets go through the tab holding the shared connection. The
 * BridgeClient calls it as it would the real one.
 */
export function sharedWebSocket(RealWS: WebSocketConstructor, key: string, options: SharedOptions = {}): WebSocketConstructor {
  const timeout = options.connectTimeoutMs ?? 5000;
  return class extends VirtualSocket {
    constructor(url: string) {
      super(tabFor(key, RealWS), url, timeout);
    }
  } as unknown as WebSocketConstructor;
}

// A tab's end: looks like a WebSocket to the BridgeClient.
class VirtualSocket implements WebSocketLike {
  readyState = CONNECTING;
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: any) => void) | null = null;
  onclose: ((ev: any) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  private readonly conn: string;
  private leader: string | undefined;
  private retry: ReturnType<typeof setInterval> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly tab: Tab,
    private readonly url: string,
    timeoutMs: number,
  ) {
    this.conn = tab.newConn();
    tab.sockets.set(this.conn, this);
    // No leader may be listening yet (it is being elected): ask again until one answers.
    const ask = () => this.tab.post({ t: "connect", to: "leader", from: tab.tabId, conn: this.conn, url: this.url });
    this.timer = setTimeout(() => this.finish(1006, "no tab holds the shared connection"), timeoutMs);
    void tab.ready.then(() => {
      if (this.readyState !== CONNECTING) return;
      ask();
      this.retry = setInterval(ask, 250);
    });
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("virtual socket not open");
    this.tab.post({ t: "send", to: "leader", from: this.tab.tabId, conn: this.conn, data });
  }

  close(_code?: number, _reason?: string): void {
    if (this.readyState === CLOSED || this.readyState === CLOSING) return;
    this.tab.post({ t: "close", to: "leader", from: this.tab.tabId, conn: this.conn });
    this.finish(1000, "client closed");
  }

  onWire(msg: Wire): void {
    if (msg.t === "open" && this.readyState === CONNECTING) {
      this.stopAsking();
      this.leader = msg.leader;
      if (this.tab.leaderId !== undefined && this.tab.leaderId !== msg.leader) {
        // Answered by a leader that has just been replaced.
        return this.finish(1006, "the shared connection moved to another tab");
      }
      this.readyState = OPEN;
      this.onopen?.({});
    } else if (msg.t === "frame" && this.readyState === OPEN) {
      this.onmessage?.({ data: msg.data });
    } else if (msg.t === "closed") {
      this.finish(msg.code, msg.reason);
    }
  }

  leaderChanged(leader: string): void {
    if (this.leader !== undefined && this.leader !== leader) {
      this.finish(1006, "the tab holding the shared connection went away");
    }
  }

  private stopAsking(): void {
    clearInterval(this.retry);
    clearTimeout(this.timer);
    this.retry = this.timer = undefined;
  }

  private finish(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.stopAsking();
    this.readyState = CLOSED;
    this.tab.sockets.delete(this.conn);
    const onclose = this.onclose;
    queueMicrotask(() => onclose?.({ code, reason }));
  }
}

// ---------------------------------------------------------------------------------------------
// The leader's router.

interface Conn {
  id: string;
  tab: string;
  // Channel -> the last offset delivered to this connection (events at or below it are skipped).
  channels: Map<string, number>;
}

interface ChannelState {
  // "subscribing": the bridge has not answered the first subscribe yet.
  state: "subscribing" | "subscribed";
  epoch: string;
  offset: number;
  conns: Set<string>;
  // Tabs that asked while the first subscribe was in flight: answered once it is.
  waiting: Array<{ conn: string; frame: Frame }>;
}

interface Asked {
  conn: string;
  id: unknown;
  kind: string;
  channel?: string;
  // A tab joining a subscribed channel from an offset: the answer is a history frame.
  join?: { since: number };
}

class Router {
  private ws: WebSocketLike | undefined;
  private wsOpen = false;
  private readonly conns = new Map<string, Conn>();
  private readonly channels = new Map<string, ChannelState>();
  private readonly asked = new Map<string, Asked>();
  private nextId = 0;
  private readonly watched = new Set<string>();
  private authenticated: string | undefined;

  constructor(
    private readonly tab: Tab,
    private readonly post: (m: Wire) => void,
  ) {}

  onWire(msg: Wire): void {
    if (msg.t === "connect") return this.connect(msg.from, msg.conn, msg.url);
    if (msg.t === "send") return this.fromTab(msg.conn, msg.data);
    if (msg.t === "close") return this.drop(msg.conn);
  }

  private connect(tab: string, conn: string, url: string): void {
    if (this.conns.has(conn)) {
      if (this.wsOpen) this.post({ t: "open", to: tab, conn, leader: this.tab.tabId });
      return;
    }
    this.conns.set(conn, { id: conn, tab, channels: new Map() });
    if (!this.watched.has(tab) && tab !== this.tab.tabId) {
      this.watched.add(tab);
      this.tab.watchTab(tab, () => {
        this.watched.delete(tab);
        for (const c of [...this.conns.values()]) if (c.tab === tab) this.drop(c.id);
      });
    }
    if (!this.ws) this.openReal(url);
    else if (this.wsOpen) this.opened(tab, conn);
  }

  private opened(tab: string, conn: string): void {
    this.post({ t: "open", to: tab, conn, leader: this.tab.tabId });
    if (this.authenticated) this.toTab(conn, this.authenticated);
  }

  private openReal(url: string): void {
    const ws = new this.tab.RealWS(url) as WebSocketLike;
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.wsOpen = true;
      for (const c of this.conns.values()) this.opened(c.tab, c.id);
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (this.ws === ws && typeof ev.data === "string") this.fromBridge(ev.data);
    };
    ws.onerror = () => undefined;
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.wsOpen = false;
      this.authenticated = undefined;
      // Every tab sees the bridge's close and applies its own rules; their reconnections open a
      // new socket here.
      const conns = [...this.conns.values()];
      this.conns.clear();
      this.channels.clear();
      this.asked.clear();
      for (const c of conns) this.post({ t: "closed", to: c.tab, conn: c.id, code: ev.code ?? 1006, reason: ev.reason ?? "" });
    };
  }

  private drop(conn: string): void {
    const c = this.conns.get(conn);
    if (!c) return;
    this.conns.delete(conn);
    for (const [id, a] of this.asked) if (a.conn === conn) this.asked.delete(id);
    for (const ch of c.channels.keys()) this.leave(conn, ch, undefined);
    for (const st of this.channels.values()) st.waiting = st.waiting.filter((w) => w.conn !== conn);
    if (this.conns.size === 0 && this.ws) {
      // Nobody left: no socket held for nothing.
      const ws = this.ws;
      this.ws = undefined;
      this.wsOpen = false;
      this.authenticated = undefined;
      this.channels.clear();
      this.asked.clear();
      ws.onclose = null;
      ws.close(1000, "no tab left");
    }
  }

  private toTab(conn: string, frame: Frame | string): void {
    const c = this.conns.get(conn);
    if (!c) return;
    this.post({ t: "frame", to: c.tab, conn, data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  // Sends `frame`; with an `id` (or `asked`), under a leader-wide id whose answer goes back to
  // `conn` with the tab's own id (`tabId`: default the frame's).
  private toBridge(frame: Frame, conn: string, asked?: Omit<Asked, "conn" | "id"> & { tabId?: unknown }): void {
    if (!this.ws || !this.wsOpen) return;
    if (frame.id !== undefined || asked) {
      const id = `s${++this.nextId}`;
      const tabId = asked && "tabId" in asked ? asked.tabId : frame.id;
      this.asked.set(id, { conn, id: tabId, kind: asked?.kind ?? String(frame.type), channel: asked?.channel, join: asked?.join });
      frame = { ...frame, id };
    }
    this.ws.send(JSON.stringify(frame));
  }

  private fromTab(conn: string, text: string): void {
    const c = this.conns.get(conn);
    if (!c) return;
    let frame: Frame;
    try {
      frame = JSON.parse(text) as Frame;
    } catch {
      return;
    }
    const type = frame.type;
    const channel = typeof frame.channel === "string" ? frame.channel : undefined;
    if (type === "pong") return; // the leader answers the bridge's pings itself
    if (type === "subscribe" && channel) return this.subscribe(conn, channel, frame);
    if (type === "unsubscribe" && channel) return this.leave(conn, channel, frame);
    this.toBridge(frame, conn);
  }

  private subscribe(conn: string, channel: string, frame: Frame): void {
    const c = this.conns.get(conn)!;
    const st = this.channels.get(channel);
    if (!st) {
      this.channels.set(channel, { state: "subscribing", epoch: "", offset: 0, conns: new Set([conn]), waiting: [] });
      c.channels.set(channel, typeof frame.since === "number" ? frame.since : 0);
      this.toBridge(frame, conn, { kind: "subscribe", channel });
      return;
    }
    if (st.conns.has(conn)) {
      // Already in: answer as the bridge would.
      this.toTab(conn, { type: "subscribed", channel, epoch: st.epoch, offset: st.offset, ...(frame.id !== undefined ? { id: frame.id } : {}) });
      return;
    }
    if (st.state === "subscribing") {
      st.waiting.push({ conn, frame });
      return;
    }
    this.join(conn, channel, st, frame);
  }

  // A tab joins a channel the bridge already sends: from the current offset, or (resuming) from
  // its own through the bridge's history.
  private join(conn: string, channel: string, st: ChannelState, frame: Frame): void {
    const c = this.conns.get(conn);
    if (!c) return;
    const since = typeof frame.since === "number" ? frame.since : undefined;
    const epoch = typeof frame.epoch === "string" ? frame.epoch : undefined;
    const id = frame.id !== undefined ? { id: frame.id } : {};
    const resumable = since !== undefined && since < st.offset && (epoch === undefined || epoch === st.epoch);
    if (!resumable) {
      st.conns.add(conn);
      c.channels.set(channel, st.offset);
      const recovered = since === undefined ? {} : { recovered: since >= st.offset && (epoch === undefined || epoch === st.epoch) };
      this.toTab(conn, { type: "subscribed", channel, epoch: st.epoch, offset: st.offset, ...recovered, ...id });
      return;
    }
    // The tab gets what it missed before it is added: the history answer lists every event up to
    // the bridge's offset at that moment, and later events follow it on the socket.
    this.toBridge({ type: "history", channel, since }, conn, { kind: "join", channel, join: { since: since! }, tabId: frame.id });
  }

  private leave(conn: string, channel: string, frame: Frame | undefined): void {
    const c = this.conns.get(conn);
    c?.channels.delete(channel);
    const st = this.channels.get(channel);
    if (!st) {
      if (frame) this.toBridge(frame, conn);
      return;
    }
    st.conns.delete(conn);
    st.waiting = st.waiting.filter((w) => w.conn !== conn);
    if (st.conns.size === 0 && st.waiting.length === 0) {
      this.channels.delete(channel);
      if (frame) this.toBridge(frame, conn);
      else this.toBridge({ type: "unsubscribe", channel }, "", { kind: "unsubscribe", channel });
      return;
    }
    if (frame) this.toTab(conn, { type: "unsubscribed", channel, ...(frame.id !== undefined ? { id: frame.id } : {}) });
  }

  private fromBridge(text: string): void {
    let frame: Frame;
    try {
      frame = JSON.parse(text) as Frame;
    } catch {
      return;
    }
    if (frame.type === "ping") {
      this.ws?.send('{"type":"pong"}');
      return;
    }
    const id = typeof frame.id === "string" ? frame.id : undefined;
    const asked = id !== undefined ? this.asked.get(id) : undefined;
    if (asked) {
      this.asked.delete(id!);
      return this.answer(asked, frame);
    }
    const channel = typeof frame.channel === "string" ? frame.channel : undefined;
    const st = channel !== undefined ? this.channels.get(channel) : undefined;
    if (channel !== undefined && st) {
      const offset = typeof frame.offset === "number" ? frame.offset : undefined;
      if (offset !== undefined && frame.type !== "subscribed") st.offset = Math.max(st.offset, offset);
      for (const conn of st.conns) {
        const c = this.conns.get(conn);
        if (!c) continue;
        if (offset !== undefined) {
          if (offset <= (c.channels.get(channel) ?? 0)) continue; // delivered with a history
          c.channels.set(channel, offset);
        }
        this.toTab(conn, text);
      }
      return;
    }
    if (channel !== undefined && frame.type !== "error") return; // a channel no tab has any more
    // The connection's `authenticated` (token on the URL): tabs that come later get it too.
    if (frame.type === "authenticated") this.authenticated = text;
    for (const c of this.conns.values()) this.toTab(c.id, text);
  }

  private answer(asked: Asked, frame: Frame): void {
    const withId = (f: Frame): Frame => {
      const out = { ...f };
      if (asked.id === undefined) delete out.id;
      else out.id = asked.id;
      return out;
    };
    const channel = asked.channel;
    if (asked.kind === "subscribe" && channel) {
      const st = this.channels.get(channel);
      if (frame.type === "subscribed" && st) {
        st.state = "subscribed";
        st.epoch = String(frame.epoch ?? "");
        st.offset = typeof frame.offset === "number" ? frame.offset : 0;
        const c = this.conns.get(asked.conn);
        if (c && (c.channels.get(channel) ?? 0) < st.offset && frame.recovered === undefined) c.channels.set(channel, st.offset);
        this.toTab(asked.conn, withId(frame));
        const waiting = st.waiting;
        st.waiting = [];
        for (const w of waiting) this.join(w.conn, channel, st, w.frame);
        return;
      }
      if (frame.type === "error" && st) {
        // Refused: for everyone who asked.
        this.channels.delete(channel);
        this.conns.get(asked.conn)?.channels.delete(channel);
        this.toTab(asked.conn, withId(frame));
        for (const w of st.waiting) {
          const f: Frame = { ...frame };
          if (w.frame.id === undefined) delete f.id;
          else f.id = w.frame.id;
          this.toTab(w.conn, f);
        }
        return;
      }
    }
    if (asked.kind === "join" && channel && asked.join) {
      const st = this.channels.get(channel);
      const c = this.conns.get(asked.conn);
      if (!st || !c) return;
      if (frame.type !== "history") {
        // History refused (not retained here): join from now, telling the tab it was not recovered.
        st.conns.add(asked.conn);
        c.channels.set(channel, st.offset);
        this.toTab(asked.conn, withId({ type: "subscribed", channel, epoch: st.epoch, offset: st.offset, recovered: false }));
        return;
      }
      let last = asked.join.since;
      for (const m of (frame.messages as Frame[] | undefined) ?? []) {
        const o = typeof m.offset === "number" ? m.offset : undefined;
        if (o === undefined || o <= last) continue;
        last = o;
        this.toTab(asked.conn, m);
      }
      const offset = Math.max(st.offset, typeof frame.offset === "number" ? frame.offset : 0);
      st.conns.add(asked.conn);
      c.channels.set(channel, Math.max(last, typeof frame.offset === "number" ? frame.offset : last));
      this.toTab(asked.conn, withId({ type: "subscribed", channel, epoch: st.epoch, offset, recovered: frame.complete === true }));
      return;
    }
    if (asked.conn === "") return; // the leader's own (an unsubscribe nobody waits for)
    this.toTab(asked.conn, withId(frame));
  }
}

// Used by BridgeClient: the real constructor, or a shared one when sharing is asked and possible.
export function maybeShared(RealWS: WebSocketConstructor, url: string, shared: boolean | SharedOptions | undefined): WebSocketConstructor {
  if (!shared || !canShare()) return RealWS;
  const options = shared === true ? {} : shared;
  return sharedWebSocket(RealWS, sharedKey(url, options), options);
}
