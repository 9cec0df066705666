// `shared: { workerUrl }` in Chromium: a SharedWorker holds the one WebSocket for ten pages of one
// origin (the bridge's /metrics says so), an event published over gRPC reaches every page, closing
// every page closes the connection (the worker learns it from each tab's Web Lock), and a worker
// URL that does not load falls back to leader election, said once, and still delivers.
//
// A SharedWorker must be of the page's origin: a small static server (port 0) serves the page, the
// client bundle and the worker bundle, both built from src/ by vite.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import type { BrowserContext, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BridgePublisher } from "../../src/publisher.js";
import { metricValue, startBridge, type RunningBridge } from "../helpers/bridge.js";
import { eventually } from "../helpers/wait.js";
import { launchChromium } from "../helpers/chromium.js";

let bridge: RunningBridge | undefined;
let ctx: BrowserContext | undefined;
let closeBrowser: (() => Promise<void>) | undefined;
let server: Server | undefined;
let origin = "";

async function bundle(entry: string, format: "iife" | "es"): Promise<string> {
  const out = await build({
    configFile: false,
    logLevel: "silent",
    build: {
      write: false,
      minify: false,
      lib: { entry: fileURLToPath(new URL(entry, import.meta.url)), formats: [format], name: "BridgeLib" },
    },
  });
  const results = Array.isArray(out) ? out : [out];
  for (const r of results) {
    for (const o of (r as { output: Array<{ type: string; code?: string }> }).output) if (o.type === "chunk" && o.code) return o.code;
  }
  throw new Error(`vite produced no bundle for ${entry}`);
}

beforeAll(async () => {
  const [client, worker] = await Promise.all([bundle("../../src/index.ts", "iife"), bundle("../../src/shared-worker.ts", "es")]);
  const files: Record<string, [string, string]> = {
    "/": ["text/html", "<!doctype html><title>shared worker</title><script src=\"/client.js\"></script>"],
    "/client.js": ["text/javascript", client],
    "/shared-worker.js": ["text/javascript", worker],
  };
  server = createServer((req, res) => {
    const f = files[new URL(req.url ?? "/", "http://x").pathname];
    if (!f) return res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    res.writeHead(200, { "content-type": f[0], "cache-control": "no-store" }).end(f[1]);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  bridge = await startBridge({ args: ["--heartbeat_interval=1s"] });
  ({ ctx, close: closeBrowser } = await launchChromium());
});

afterAll(async () => {
  await closeBrowser?.();
  await bridge?.stop();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
});

const metric = (name: string): Promise<number> => metricValue(bridge!.wsPort, name);
const until = (what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> =>
  eventually(what, cond, timeoutMs);

interface Opened {
  page: Page;
  warnings: string[];
}

// `noBye`: the page never says goodbye (as when it crashes): the worker must learn from its lock.
async function openPage(channel: string, workerUrl: string, noBye = false): Promise<Opened> {
  const page = await ctx!.newPage();
  const warnings: string[] = [];
  page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  await page.goto(`${origin}/`);
  await page.evaluate(
    async ([url, ch, worker, noBye]) => {
      const w = window as any;
      if (noBye) {
        const add = window.addEventListener.bind(window);
        w.addEventListener = (type: string, ...rest: any[]) => (type === "pagehide" ? undefined : (add as any)(type, ...rest));
      }
      w.offsets = [];
      const c = new w.BridgeLib.BridgeClient({ url, channels: [ch], shared: { workerUrl: worker }, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
      c.on("agent_message", (_m: any, e: any) => w.offsets.push(e.offset));
      w.client = c;
      w.shared = () => w.BridgeLib.sharedStatus(w.BridgeLib.sharedKey(url));
      await c.connect();
    },
    [bridge!.wsUrl, channel, workerUrl, noBye] as const,
  );
  return { page, warnings };
}

const offsets = (p: Page) => p.evaluate(() => (window as any).offsets as number[]);
const status = (p: Page) => p.evaluate(() => (window as any).shared() as { leader: boolean; worker: boolean });

describe("one socket for many tabs, held by a SharedWorker", () => {
  it("ten pages share the worker's one WebSocket; closing them all closes it", async () => {
    const channel = `circles/worker-${Date.now()}`;
    const opened: Opened[] = [];
    for (let i = 0; i < 10; i++) opened.push(await openPage(channel, `${origin}/shared-worker.js`));
    const pages = opened.map((o) => o.page);
    expect(await metric("bridge_connections_current")).toBe(1);
    for (const p of pages) expect(await status(p)).toMatchObject({ leader: false, worker: true });
    for (const o of opened) expect(o.warnings).toEqual([]);

    const pub = new BridgePublisher(bridge!.grpcTarget);
    try {
      for (let i = 1; i <= 3; i++) await pub.publish(channel, "agent_message", { agentId: 1, content: `m${i}` });
      await until("every page to get 3 events", async () => (await Promise.all(pages.map(offsets))).every((o) => o.length >= 3));
      for (const p of pages) expect(await offsets(p)).toEqual([1, 2, 3]);
      expect(await metric("bridge_connections_current")).toBe(1);

      // A page with a channel of its own goes without a word: its lock tells the worker, which
      // unsubscribes the channel nobody has any more.
      expect(await metric("bridge_subscriptions_current")).toBe(1);
      const silent = await openPage(`circles/worker-own-${Date.now()}`, `${origin}/shared-worker.js`, true);
      expect(await metric("bridge_subscriptions_current")).toBe(2);
      await silent.page.close();
      await until("the worker to release the closed page's channel (bridge_subscriptions_current 1)", async () => (await metric("bridge_subscriptions_current")) === 1);

      // Nine pages go: the worker keeps the socket and the channel for the last one.
      const last = pages.pop()!;
      for (const p of pages.splice(0)) await p.close();
      pages.push(last);
      await pub.publish(channel, "agent_message", { agentId: 1, content: "m4" });
      await until("the last page to get event 4", async () => (await offsets(last)).length >= 4);
      expect(await offsets(last)).toEqual([1, 2, 3, 4]);
      expect(await metric("bridge_connections_current")).toBe(1);
    } finally {
      pub.close();
      for (const p of pages) await p.close();
    }
    await until("the worker to close the connection once every page has closed (bridge_connections_current 0)", async () => (await metric("bridge_connections_current")) === 0);
  });

  it("a worker URL that does not load falls back to leader election, says so once, and still delivers", async () => {
    const channel = `circles/worker-fallback-${Date.now()}`;
    const { page, warnings } = await openPage(channel, `${origin}/no-such-worker.js`);
    const pub = new BridgePublisher(bridge!.grpcTarget);
    try {
      expect(await status(page)).toMatchObject({ leader: true, worker: false });
      await pub.publish(channel, "agent_message", { agentId: 1, content: "after the fallback" });
      await until("the event on the fallen-back page", async () => (await offsets(page)).length >= 1);
      expect(await offsets(page)).toEqual([1]);
      const said = warnings.filter((w) => w.includes("SharedWorker"));
      expect(said).toHaveLength(1);
      expect(said[0]).toContain("leader election");
      expect(await metric("bridge_connections_current")).toBe(1);
    } finally {
      pub.close();
      await page.close();
    }
    await until("no connection left (bridge_connections_current 0)", async () => (await metric("bridge_connections_current")) === 0);
  });
});
