// `shared: true` in Chromium: ten pages of one origin (one browser context) hold ONE WebSocket to
// the real bridge (its /metrics says so), events reach every page, and when the page holding the
// connection closes another takes over and every page goes on with contiguous offsets.
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
let bundle = "";

async function bundleClient(): Promise<string> {
  const out = await build({
    configFile: false,
    logLevel: "silent",
    build: {
      write: false,
      minify: false,
      lib: { entry: fileURLToPath(new URL("../../src/index.ts", import.meta.url)), formats: ["iife"], name: "BridgeLib" },
    },
  });
  const results = Array.isArray(out) ? out : [out];
  for (const r of results) {
    for (const o of (r as { output: Array<{ type: string; code?: string }> }).output) if (o.type === "chunk" && o.code) return o.code;
  }
  throw new Error("vite produced no bundle");
}

beforeAll(async () => {
  bundle = await bundleClient();
  bridge = await startBridge({ args: ["--heartbeat_interval=1s"] });
  ({ ctx, close: closeBrowser } = await launchChromium());
});

afterAll(async () => {
  await closeBrowser?.();
  await bridge?.stop();
});

const metric = (name: string): Promise<number> => metricValue(bridge!.wsPort, name);
const until = (what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> =>
  eventually(what, cond, timeoutMs);

async function openPage(channel: string): Promise<Page> {
  const page = await ctx!.newPage();
  await page.goto(`http://127.0.0.1:${bridge!.wsPort}/`);
  await page.addScriptTag({ content: bundle });
  await page.evaluate(
    async ([url, ch]) => {
      const w = window as any;
      w.offsets = [];
      w.gaps = [];
      const c = new w.BridgeLib.BridgeClient({ url, channels: [ch], shared: true, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
      c.on("agent_message", (_m: any, e: any) => w.offsets.push(e.offset));
      c.onGap((g: any) => w.gaps.push(g));
      w.client = c;
      w.shared = () => w.BridgeLib.sharedStatus(w.BridgeLib.sharedKey(url));
      await c.connect();
    },
    [bridge!.wsUrl, channel] as const,
  );
  return page;
}

const offsets = (p: Page) => p.evaluate(() => (window as any).offsets as number[]);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("one socket for many tabs", () => {
  it("ten pages share one WebSocket; closing the leader hands over without losing an event", async () => {
    const channel = `circles/shared-${Date.now()}`;
    const pages: Page[] = [];
    for (let i = 0; i < 10; i++) pages.push(await openPage(channel));
    expect(await metric("bridge_connections_current")).toBe(1);
    const leaders = (await Promise.all(pages.map((p) => p.evaluate(() => (window as any).shared().leader)))).filter(Boolean);
    expect(leaders).toHaveLength(1);

    const pub = new BridgePublisher(bridge!.grpcTarget);
    try {
      for (let i = 1; i <= 5; i++) await pub.publish(channel, "agent_message", { agentId: 1, content: `m${i}` });
      await until("every page to get 5 events", async () => (await Promise.all(pages.map(offsets))).every((o) => o.length >= 5));
      for (const p of pages) expect(await offsets(p)).toEqual(range(1, 5));

      // The leader goes; events published during the hand-over and after it reach every other page.
      const leaderIndex = (await Promise.all(pages.map((p) => p.evaluate(() => (window as any).shared().leader)))).indexOf(true);
      const [leader] = pages.splice(leaderIndex, 1);
      await leader.close();
      for (let i = 6; i <= 10; i++) await pub.publish(channel, "agent_message", { agentId: 1, content: `m${i}` });
      await until("a new leader", async () => (await Promise.all(pages.map((p) => p.evaluate(() => (window as any).shared().leader)))).filter(Boolean).length === 1);
      for (let i = 11; i <= 15; i++) await pub.publish(channel, "agent_message", { agentId: 1, content: `m${i}` });
      await until("every page to get 15 events", async () => (await Promise.all(pages.map(offsets))).every((o) => o.length >= 15));
      for (const p of pages) {
        expect(await offsets(p)).toEqual(range(1, 15)); // contiguous: nothing lost, nothing twice
        expect(await p.evaluate(() => (window as any).gaps.length)).toBe(0);
      }
      await until("one connection again", async () => (await metric("bridge_connections_current")) === 1);
    } finally {
      pub.close();
      for (const p of pages) await p.close();
    }
    // The last page gone, the connection goes too.
    await until("no connection left", async () => (await metric("bridge_connections_current")) === 0);
  });
  it("routes by channel and counts references: a channel one tab leaves stays for the others", async () => {
    const common = `circles/shared-common-${Date.now()}`;
    const own = `circles/shared-own-${Date.now()}`;
    const pages = [await openPage(common), await openPage(common), await openPage(common)];
    const pub = new BridgePublisher(bridge!.grpcTarget);
    try {
      // Page 0 alone takes a second channel, then pages 0 and 1 both have it and page 0 leaves.
      await pages[0].evaluate(async (ch) => {
        const w = window as any;
        w.own = [];
        w.client.on("agent_message", (_m: any, e: any) => e.channel === ch && w.own.push(e.offset));
        await w.client.subscribe(ch).ready;
      }, own);
      await pub.publish(own, "agent_message", { agentId: 1, content: "only page 0" });
      await pub.publish(common, "agent_message", { agentId: 1, content: "everyone" });
      await until("the common event everywhere", async () => (await Promise.all(pages.map(offsets))).every((o) => o.includes(1)));
      await until("page 0's own event", async () => (await pages[0].evaluate(() => (window as any).own.length)) === 1);
      // Pages 1 and 2 got only the common channel's event (offsets counts agent_message of both).
      for (const p of pages.slice(1)) expect(await offsets(p)).toEqual([1]);
      expect(await offsets(pages[0])).toEqual([1, 1]);

      await pages[1].evaluate(async (ch) => {
        const w = window as any;
        w.own = [];
        w.client.on("agent_message", (_m: any, e: any) => e.channel === ch && w.own.push(e.offset));
        await w.client.subscribe(ch).ready;
      }, own);
      await pages[0].evaluate(async (ch) => (window as any).client.unsubscribe(ch), own);
      await pub.publish(own, "agent_message", { agentId: 1, content: "page 1 still has it" });
      await until("page 1's event on the channel page 0 left", async () => (await pages[1].evaluate(() => (window as any).own.length)) === 1);
      expect(await pages[1].evaluate(() => (window as any).own)).toEqual([2]);
      expect(await pages[0].evaluate(() => (window as any).own)).toEqual([1]);
      expect(await metric("bridge_connections_current")).toBe(1);
    } finally {
      pub.close();
      for (const p of pages) await p.close();
    }
  });
});
