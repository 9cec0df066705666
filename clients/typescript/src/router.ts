// The router behind a shared connection (src/shared.ts explains the rules): one real WebSocket,
// the virtual sockets of many tabs. It has no runtime import, so that the SharedWorker script
// (src/shared-worker.ts) is this file and itself.
import type { WebSocketConstructor, WebSocketLike } from "./client.js";

type Frame = Record<string, unknown>;

/** The router host id of the SharedWorker (src/shared-worker.ts): the `leader` of its tabs. */
export const WORKER_ID = "shared-worker";

/** A tab's messages to the router. `conn` is one virtual socket of the tab `from`. */
export type ToRouter =
  | { t: "connect"; to: "leader"; from: string; conn: string; url: string }
  | { t: "send"; to: "leader"; from: string; conn: string; data: string }
  | { t: "close"; to: "leader"; from: string; conn: string };

/** The router's messages to the tab `to`; `leader` is the router host's id. */
export type FromRouter =
  | { t: "open"; to: string; conn: string; leader: string }
  | { t: "frame"; to: string; conn: string; data: string }
  | { t: "closed"; to: string; conn: string; code: number; reason: string };

/** How the router reaches tabs. */
export interface RouterHost {
  /** The host's id: sent as `leader` in every `open`; a tab with this id is never watched. */
  readonly id: string;
  /** The real WebSocket constructor. */
  readonly RealWS: WebSocketConstructor;
  /** Delivers `msg` to the tab `tab` (dropped if the tab is gone). */
  send(tab: string, msg: FromRouter): void;
  /** Calls `gone` once the tab has gone (closed or crashed). Called once per tab. */
  watchTab(tab: string, gone: () => void): void;
}


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

/**
 * The routing of one real WebSocket between the virtual sockets of many tabs (src/shared.ts tells
 * the rules). It knows tabs only through its host: the leader tab (messages over a
 * BroadcastChannel) or the SharedWorker (one MessagePort per tab).
 */
export class Router {
  private ws: WebSocketLike | undefined;
  private wsOpen = false;
  private readonly conns = new Map<string, Conn>();
  private readonly channels = new Map<string, ChannelState>();
  private readonly asked = new Map<string, Asked>();
  private nextId = 0;
  private readonly watched = new Set<string>();
  private authenticated: string | undefined;

  constructor(private readonly host: RouterHost) {}

  /** A message from a tab. */
  onWire(msg: ToRouter): void {
    if (msg.t === "connect") return this.connect(msg.from, msg.conn, msg.url);
    if (msg.t === "send") return this.fromTab(msg.conn, msg.data);
    if (msg.t === "close") return this.drop(msg.conn);
  }

  private connect(tab: string, conn: string, url: string): void {
    if (this.conns.has(conn)) {
      if (this.wsOpen) this.post({ t: "open", to: tab, conn, leader: this.host.id });
      return;
    }
    this.conns.set(conn, { id: conn, tab, channels: new Map() });
    if (!this.watched.has(tab) && tab !== this.host.id) {
      this.watched.add(tab);
      this.host.watchTab(tab, () => this.tabGone(tab));
    }
    if (!this.ws) this.openReal(url);
    else if (this.wsOpen) this.opened(tab, conn);
  }

  /** The tab is gone (its lock released, or it said goodbye): its connections are dropped. */
  tabGone(tab: string): void {
    this.watched.delete(tab);
    for (const c of [...this.conns.values()]) if (c.tab === tab) this.drop(c.id);
  }

  private post(msg: FromRouter): void {
    this.host.send(msg.to, msg);
  }

  private opened(tab: string, conn: string): void {
    this.post({ t: "open", to: tab, conn, leader: this.host.id });
    if (this.authenticated) this.toTab(conn, this.authenticated);
  }

  private openReal(url: string): void {
    const ws = new this.host.RealWS(url) as WebSocketLike;
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
