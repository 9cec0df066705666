// The SharedWorker script of the shared connection (`shared: { workerUrl }`, src/shared.ts): the
// worker holds the one real WebSocket and runs the Router (src/router.ts) for every tab of the
// origin that loads it. Each `connect` event is one tab's MessagePort; the tab introduces itself
// with a `hello` naming a Web Lock it holds while it lives. The worker waits on that lock to learn
// that the tab has gone (closed or crashed: a port gives no such signal), and a tab that unloads
// says `bye` first so that its channels are released at once.
//
// Serve this file (and router.js beside it, which it imports) from the application's origin, and
// load it as a module worker; the client does so itself from `workerUrl`.
import { Router, WORKER_ID, type RouterHost, type ToRouter } from "./router.js";
import type { WebSocketConstructor } from "./client.js";

/** A tab's first message on its port. */
export interface WorkerHello {
  t: "hello";
  /** The shared key (src/shared.ts `sharedKey`): tabs of one key share one socket. */
  key: string;
  /** The tab's id and the Web Lock it holds while it lives. */
  tab: string;
  lock: string;
}

type FromTab = WorkerHello | { t: "bye" } | ToRouter;

interface Shared {
  router: Router;
  ports: Map<string, MessagePort>;
  locks: Map<string, string>;
}

function lockManager(): LockManager | undefined {
  return (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
}

/** Serves tabs in `scope` (a SharedWorkerGlobalScope): one Router per shared key. */
export function serveTabs(scope: { addEventListener(type: "connect", fn: (ev: MessageEvent) => void): void }, RealWS?: WebSocketConstructor): void {
  const shared = new Map<string, Shared>();
  const WS = RealWS ?? ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor);
  const sharedFor = (key: string): Shared => {
    let s = shared.get(key);
    if (s) return s;
    const ports = new Map<string, MessagePort>();
    const locks = new Map<string, string>();
    const host: RouterHost = {
      id: WORKER_ID,
      RealWS: WS,
      send: (tab, msg) => ports.get(tab)?.postMessage(msg),
      watchTab: (tab, gone) => {
        const lock = locks.get(tab);
        const manager = lockManager();
        if (!lock || !manager) return;
        // Granted once the tab's own lock is released: the tab closed (or crashed).
        void manager.request(lock, async () => {
          ports.delete(tab);
          locks.delete(tab);
          gone();
        });
      },
    };
    s = { router: new Router(host), ports, locks };
    shared.set(key, s);
    return s;
  };
  scope.addEventListener("connect", (ev: MessageEvent) => {
    const port = ev.ports[0];
    if (!port) return;
    let mine: Shared | undefined;
    let tab = "";
    port.onmessage = (m: MessageEvent) => {
      const msg = m.data as FromTab;
      if (!msg || typeof msg !== "object") return;
      if (msg.t === "hello") {
        if (mine || typeof msg.key !== "string" || typeof msg.tab !== "string" || typeof msg.lock !== "string") return;
        mine = sharedFor(msg.key);
        tab = msg.tab;
        mine.ports.set(tab, port);
        mine.locks.set(tab, msg.lock);
        port.postMessage({ t: "welcome" });
        return;
      }
      if (!mine) return;
      if (msg.t === "bye") {
        mine.ports.delete(tab);
        mine.router.tabGone(tab);
        return;
      }
      // A tab speaks for itself only: `from` is the tab its hello named.
      mine.router.onWire({ ...msg, from: tab } as ToRouter);
    };
    port.start();
  });
}

// Loaded as a SharedWorker: serve. Imported anywhere else (a bundler's graph, a test): nothing.
const G = globalThis as { SharedWorkerGlobalScope?: abstract new () => unknown };
if (typeof G.SharedWorkerGlobalScope === "function" && globalThis instanceof G.SharedWorkerGlobalScope) {
  serveTabs(globalThis as unknown as Parameters<typeof serveTabs>[0]);
}
