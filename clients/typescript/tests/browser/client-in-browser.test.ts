// BridgeClient bundled for the browser and run in Chromium with its native WebSocket: typed
// decoding (generated fromJson, bigint int64), multiplexed channels, sending, and the JSON ping.
import { fileURLToPath } from "node:url";
import type { BrowserContext, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BridgePublisher } from "../../src/publisher.js";
import { startBridge, type RunningBridge } from "../helpers/bridge.js";
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
  bridge = await startBridge({ args: ["--heartbeat_interval=0.3s"] });
  ({ ctx, close: closeBrowser } = await launchChromium());
});

afterAll(async () => {
  await closeBrowser?.();
  await bridge?.stop();
});

async function pageWithClient(): Promise<Page> {
  const page = ctx!.pages()[0] ?? (await ctx!.newPage());
  await page.goto(`http://127.0.0.1:${bridge!.wsPort}/`);
  await page.addScriptTag({ content: bundle });
  return page;
}

describe("BridgeClient in Chromium", () => {
  it("decodes typed events from several channels with the browser's WebSocket", async () => {
    const page = await pageWithClient();
    const circle = `circles/browser-${Date.now()}`;
    const ws = `workspace/browser-${Date.now()}`;
    await page.evaluate(
      async ([url, channels]) => {
        const w = window as any;
        w.got = [];
        w.frames = [];
        const c = new w.BridgeLib.BridgeClient({ url, channels, reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
        c.on("agent_message", (m: any, e: any) => w.got.push({ t: "agent_message", typeName: m.$typeName, content: m.content, agentId: m.agentId, offset: e.offset, channel: e.channel }));
        c.on("file_changed", (m: any, e: any) => w.got.push({ t: "file_changed", typeName: m.$typeName, size: typeof m.sizeBytes + ":" + String(m.sizeBytes), channel: e.channel }));
        c.on("deploy.done", (d: any, e: any) => w.got.push({ t: "deploy.done", data: d, custom: e.custom }));
        c.onFrame((f: any) => w.frames.push(f.type));
        w.client = c;
        await c.connect();
      },
      [bridge!.wsUrl, [circle, ws]] as const,
    );
    const pub = new BridgePublisher(bridge!.grpcTarget);
    try {
      await pub.publish(circle, "agent_message", { agentId: 7, content: "hi browser" });
      await pub.publish(ws, "file_changed", { path: "a", sizeBytes: 9_007_199_254_740_993n });
      await pub.publish(circle, "deploy.done", { env: "prod" });
    } finally {
      pub.close();
    }
    await page.waitForFunction(() => (window as any).got.length >= 3, undefined, { timeout: 10_000 });
    const got = await page.evaluate(() => (window as any).got);
    expect(got).toEqual([
      { t: "agent_message", typeName: "gathering.bridge.v1.AgentMessage", content: "hi browser", agentId: 7, offset: 1, channel: circle },
      { t: "file_changed", typeName: "gathering.bridge.v1.FileChanged", size: "bigint:9007199254740993", channel: ws },
      { t: "deploy.done", data: { env: "prod" }, custom: true },
    ]);
    // The bridge's JSON heartbeat (every 0.3 s here) reached the page, and ping() gets a pong.
    await page.waitForFunction(() => (window as any).frames.includes("ping"), undefined, { timeout: 5000 });
    const rtt = await page.evaluate(() => (window as any).client.ping(3000));
    expect(rtt).toBeGreaterThanOrEqual(0);
    await page.evaluate(() => (window as any).client.close());
  });
});
