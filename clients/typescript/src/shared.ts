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
// - events go to the tabs subscribed to their channel; frames about no channel to every tab (the
//   bridge's `reconnect` at shutdown too: each tab's client takes the positions of its own
//   channels from it); the bridge's JSON pings are answered by the leader;
// - hand-over: when the leader tab goes, its lock is released and a waiting tab takes it; the new
//   leader announces itself, every virtual socket of the old one closes (1006), and each tab's
//   BridgeClient reconnects through the new leader with since/epoch for every channel, as after
//   any lost connection: the bridge replays what was missed.
//
// When the real socket closes (a refusal, the bridge going away), every virtual socket closes with
// the same code and reason, so each tab's client applies its terminal/retryable rules.
//
// With `shared: { workerUrl }`, a SharedWorker (src/shared-worker.ts, served by the application)
// holds the real socket and runs the same Router instead of a leader tab: no election, no
// hand-over. Each tab talks to it over its own MessagePort and holds a Web Lock the worker waits on
// to learn that the tab has gone. Where SharedWorker is missing, or the worker cannot be created
// or fails to load (an error event, or no answer within connectTimeoutMs), the tab says so once
// (console.warn) and shares by leader election instead.
//
// Where Web Locks or BroadcastChannel are missing (old browsers, Node), the client uses its own
// WebSocket as without `shared`.
import type { WebSocketConstructor, WebSocketLike } from "./client.js";
import { Router, WORKER_ID, type FromRouter, type ToRouter } from "./router.js";

export interface SharedOptions {
  /**
   * Tabs share a connection when they use the same key (default: the bridge's URL without its
   * query). Tabs with different tokens or identities should use different keys.
   */
  key?: string;
  /** How long a tab waits for a leader to answer before its virtual socket fails (default 5 s). */
  connectTimeoutMs?: number;
  /**
   * The URL of this package's `shared-worker` script (dist/shared-worker.js), served from the
   * page's origin: a SharedWorker holds the connection instead of an elected tab. Loaded as a
   * module worker. When it cannot be used, the tabs fall back to leader election.
   */
  workerUrl?: string | URL;
  /** The SharedWorker's name (default `gathering-bridge:` + the key). */
  name?: string;
}

/** What a tab knows about the shared connection (tests and status displays). */
export interface SharedStatus {
  /** This tab holds the real WebSocket. */
  leader: boolean;
  /** This tab's id, and the leader's (once known). */
  tabId: string;
  leaderId: string | undefined;
  /** A SharedWorker holds the connection (leaderId is then "shared-worker"). */
  worker: boolean;
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

// What a virtual socket needs of the page's end of the shared connection: the leader-election
// Tab, or the WorkerTab.
interface TabLike {
  readonly tabId: string;
  readonly leaderId: string | undefined;
  readonly sockets: Map<string, VirtualSocket>;
  readonly ready: Promise<void>;
  newConn(): string;
  post(msg: ToRouter): void;
  // A virtual socket's connect went unanswered.
  noAnswer?(): void;
}

// One per key and page: the election, the channel, the virtual sockets, and (when leader) the
// router.
class Tab implements TabLike {
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

// One per key and page in worker mode: the port to the SharedWorker and this tab's lock.
class WorkerTab implements TabLike {
  readonly tabId = `${randomId()}#${++tabCounter}`;
  readonly leaderId = WORKER_ID;
  readonly sockets = new Map<string, VirtualSocket>();
  readonly ready: Promise<void>;
  failed = false;
  // The worker answered the hello: it runs (a slow bridge is then no reason to give it up).
  private welcomed = false;
  private readonly port: MessagePort;
  private nextConn = 0;

  constructor(
    readonly key: string,
    private readonly workerUrl: string,
    name: string,
  ) {
    // Throws where the URL is refused (another origin, a bad URL): the caller falls back.
    const worker = new SharedWorker(workerUrl, { type: "module", name });
    this.port = worker.port;
    worker.onerror = () => this.fail("it failed to load");
    this.port.onmessage = (ev: MessageEvent) => {
      const msg = ev.data as FromRouter | { t: "welcome" };
      if (msg?.t === "welcome") this.welcomed = true;
      else if (msg && typeof msg.conn === "string") this.sockets.get(msg.conn)?.onWire(msg);
    };
    this.port.start();
    const locks = (navigator as unknown as { locks: LockManager }).locks;
    const lock = `gathering-bridge:${key}:worker-tab:${this.tabId}`;
    // Held while the page lives: the worker waits on it (a port does not tell when it closes).
    // The hello goes once it is held, so that the worker's wait cannot be granted first.
    this.ready = new Promise<void>((held) => {
      void locks.request(lock, () => {
        held();
        return new Promise<void>(() => undefined);
      });
    }).then(() => {
      this.port.postMessage({ t: "hello", key, tab: this.tabId, lock });
    });
    // A page that unloads for good releases its channels at once (the lock follows anyway).
    // Not when it may be kept in the back/forward cache: it could come back.
    globalThis.addEventListener?.("pagehide", (ev: Event) => {
      if (!(ev as PageTransitionEvent).persisted && !this.failed) this.port.postMessage({ t: "bye" });
    });
  }

  newConn(): string {
    return `${this.tabId}/${++this.nextConn}`;
  }

  post(msg: ToRouter): void {
    if (!this.failed) this.port.postMessage(msg);
  }

  noAnswer(): void {
    if (!this.welcomed) this.fail("it did not answer");
  }

  // Every virtual socket closes (1006); the client's reconnection takes the leader-election path.
  fail(why: string): void {
    if (this.failed) return;
    this.failed = true;
    warnFallback(this.workerUrl, why);
    this.port.close();
    for (const s of [...this.sockets.values()]) s.lost("the shared worker failed");
  }
}

const workerTabs = new Map<string, WorkerTab | null>();

function warnFallback(url: string, why: string): void {
  console.warn(`bridge-client: the SharedWorker ${url} cannot hold the shared connection (${why}); the tabs share it by leader election instead`);
}

// The worker-mode end for `key`, or undefined when the worker cannot be used (said once).
function workerTabFor(key: string, options: SharedOptions): WorkerTab | undefined {
  let w = workerTabs.get(key);
  if (w === undefined) {
    const url = String(options.workerUrl);
    w = null;
    if (typeof (globalThis as { SharedWorker?: unknown }).SharedWorker !== "function") {
      warnFallback(url, "SharedWorker is not available here");
    } else {
      try {
        w = new WorkerTab(key, url, options.name ?? `gathering-bridge:${key}`);
      } catch (err) {
        warnFallback(url, err instanceof Error ? err.message : String(err));
      }
    }
    workerTabs.set(key, w);
  }
  return w && !w.failed ? w : undefined;
}

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
  const w = workerTabs.get(key);
  if (w && !w.failed) return { leader: false, tabId: w.tabId, leaderId: w.leaderId, worker: true };
  const t = tabs.get(key);
  return t && { leader: t.router !== undefined, tabId: t.tabId, leaderId: t.leaderId, worker: false };
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
  const worker = options.workerUrl !== undefined;
  return class extends VirtualSocket {
    constructor(url: string) {
      super((worker && workerTabFor(key, options)) || tabFor(key, RealWS), url, timeout);
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
    private readonly tab: TabLike,
    private readonly url: string,
    timeoutMs: number,
  ) {
    this.conn = tab.newConn();
    tab.sockets.set(this.conn, this);
    // No leader may be listening yet (it is being elected): ask again until one answers.
    const ask = () => this.tab.post({ t: "connect", to: "leader", from: tab.tabId, conn: this.conn, url: this.url });
    this.timer = setTimeout(() => {
      this.finish(1006, "no tab holds the shared connection");
      this.tab.noAnswer?.();
    }, timeoutMs);
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

  lost(reason: string): void {
    this.finish(1006, reason);
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
