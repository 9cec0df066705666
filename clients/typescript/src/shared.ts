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
import { Router, type FromRouter, type ToRouter } from "./router.js";

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

// Messages on the BroadcastChannel. `to` is a tab id, or "leader".
type Wire = ToRouter | FromRouter | { t: "leader"; to: "*"; leader: string };

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
      this.router = new Router({
        id: this.tabId,
        RealWS,
        send: (_tab, msg) => this.post(msg),
        watchTab: (tab, gone) => this.watchTab(tab, gone),
      });
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
      queueMicrotask(() => (msg.to === "leader" ? this.router?.onWire(msg as ToRouter) : this.onWire(msg)));
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
      this.router?.onWire(msg as ToRouter);
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

// Used by BridgeClient: the real constructor, or a shared one when sharing is asked and possible.
export function maybeShared(RealWS: WebSocketConstructor, url: string, shared: boolean | SharedOptions | undefined): WebSocketConstructor {
  if (!shared || !canShare()) return RealWS;
  const options = shared === true ? {} : shared;
  return sharedWebSocket(RealWS, sharedKey(url, options), options);
}
