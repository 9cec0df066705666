// The demo page (clients/web/index.html, served by the bridge at GET /) in Debian's Chromium:
// connect, receive a gRPC-published event, send, survive a SIGKILL + restart of the bridge on the
// same ports (reconnect, new epoch shown as a gap), receive again; screenshot in test-artifacts/.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BrowserContext, Page } from "playwright-core";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BridgeClient, type BridgeEvent } from "../../src/index.js";
import { BridgePublisher } from "../../src/publisher.js";
import { startBridge, type RunningBridge } from "../helpers/bridge.js";
import { nextOf } from "../helpers/wait.js";
import { launchChromium } from "../helpers/chromium.js";
import { testAuth } from "../helpers/auth.js";
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const ARTIFACTS = join(REPO, "test-artifacts");

let bridge: RunningBridge | undefined;
let ctx: BrowserContext | undefined;
let closeBrowser: (() => Promise<void>) | undefined;

beforeAll(async () => {
  bridge = await startBridge();
  ({ ctx, close: closeBrowser } = await launchChromium());
});

afterAll(async () => {
  await closeBrowser?.();
  await bridge?.stop();
});

async function publish(b: RunningBridge, channel: string, content: string) {
  const p = new BridgePublisher(b.grpcTarget);
  try {
    return await p.publish(channel, "agent_message", { agentId: 7, agentName: "ada", content });
  } finally {
    p.close();
  }
}

const row = (page: Page, offset: number, text: string) =>
  page.waitForFunction(
    ([o, t]) => [...document.querySelectorAll(`#events tr[data-type="agent_message"][data-offset="${o}"]`)].some((r) => r.textContent!.includes(t as string)),
    [offset, text] as const,
    { timeout: 20_000 },
  );

describe("demo page", () => {
  it("shows live events, sends, and reconnects after the bridge is killed and restarted", async () => {
    const page = ctx!.pages()[0] ?? (await ctx!.newPage());
    const consoleErrors: string[] = [];
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const channel = `circles/page-${Date.now()}`;
    const resp = await page.goto(`http://127.0.0.1:${bridge!.wsPort}/`);
    expect(resp?.status()).toBe(200);
    expect(await page.title()).toBe("gathering-bridge");

    await page.fill("#channel", channel);
    await page.click("#connect");
    await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
    await page.waitForSelector('#events tr.notice[data-kind="subscribed"]', { timeout: 10_000 });

    await publish(bridge!, channel, "hello from grpc");
    await row(page, 1, "hello from grpc");

    // What the page sends reaches another subscriber of the channel.
    const peer = new BridgeClient({ url: `${bridge!.wsUrl}/ws/${channel}`, WebSocket, reconnect: false });
    await peer.connect();
    const got = nextOf<BridgeEvent>("the page's message at a peer", (fn) => peer.onEvent(fn), (e) => e.type === "message");
    await page.fill("#message", "hi from the page");
    await page.click("#send");
    expect((await got).data).toEqual({ content: "hi from the page" });
    peer.close();

    // SIGKILL: no close frame; the page notices the dead socket and retries with backoff.
    const { wsPort, grpcPort } = bridge!;
    await bridge!.kill();
    await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
    bridge = await startBridge({ wsPort, grpcPort });
    expect([bridge.wsPort, bridge.grpcPort]).toEqual([wsPort, grpcPort]);
    await page.waitForSelector('#state[data-state="open"]', { timeout: 20_000 });
    // The new bridge has a new epoch: the page resumes with since/epoch and reports the gap.
    await page.waitForSelector('#events tr.notice[data-kind="gap"]', { timeout: 10_000 });
    expect(await page.textContent("#recovery")).toBe("gap");
    const reconnects = Number(await page.textContent("#reconnects"));
    expect(reconnects).toBeGreaterThanOrEqual(1);

    await publish(bridge, channel, "after restart");
    await row(page, 1, "after restart");
    // Both events are on the page: the one before the restart was kept.
    await row(page, 1, "hello from grpc");
    expect(consoleErrors).toEqual([]);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "page.png"), fullPage: true });
  });

  it("with auth: a token, several channels on one socket, presence, refusals with their reason", async () => {
    const auth = testAuth();
    const b = await startBridge({ args: auth.args });
    try {
      const page = await ctx!.newPage();
      const consoleErrors: string[] = [];
      page.on("pageerror", (e) => consoleErrors.push(String(e)));
      await page.goto(`http://127.0.0.1:${b.wsPort}/`);
      const circle = `circles/pg-${Date.now()}`;
      const ws = `workspace/pg-${Date.now()}`;
      const denied = `agents/pg-${Date.now()}`;
      // Someone already there: the page learns it from the retained history (agent_joined).
      const zoe = new BridgeClient({ url: `${b.wsUrl}/ws/${circle}`, WebSocket, reconnect: false, token: auth.token("zoe") });
      await zoe.connect();

      await page.fill("#channel", `${circle}, ${ws}, ${denied}, nowhere/x`);
      await page.fill("#token", auth.token("page-user", { channels: ["circles/*", "workspace/*"], publish: "circles/*" }));
      await page.click("#connect");
      await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
      await page.waitForSelector(`#channels li[data-channel="${circle}"][data-state="subscribed"]`, { timeout: 10_000 });
      await page.waitForSelector(`#channels li[data-channel="${ws}"][data-state="subscribed"]`);
      // Refusals shown with the bridge's reason, on the channel they are about.
      await page.waitForSelector(`#channels li[data-channel="${denied}"][data-state="refused"]`);
      await page.waitForSelector('#channels li[data-channel="nowhere/x"][data-state="refused"]');
      expect(await page.textContent(`#channels li[data-channel="${denied}"]`)).toMatch(/forbidden.*does not grant/);
      expect(await page.textContent('#channels li[data-channel="nowhere/x"]')).toMatch(/invalid_channel.*unknown namespace/);
      expect(await page.textContent("#identity")).toBe("page-user");
      await page.waitForSelector(`#presence li[data-identity="zoe"][data-channel="${circle}"]`);
      await page.waitForSelector(`#presence li[data-identity="page-user"][data-channel="${circle}"]`);

      // Events of both channels on the one socket.
      const pub = new BridgePublisher(b.grpcTarget, { apiKey: auth.apiKey });
      try {
        await pub.publish(ws, "file_deleted", { path: "gone.txt" });
        await pub.publish(circle, "agent_message", { content: "multi" });
      } finally {
        pub.close();
      }
      await page.waitForSelector(`#events tr[data-type="file_deleted"][data-channel="${ws}"]`, { timeout: 10_000 });
      await page.waitForSelector(`#events tr[data-type="agent_message"][data-channel="${circle}"]`);
      const sockets = await page.evaluate(() => performance.getEntriesByType("resource").filter((e) => e.name.includes("/ws")).length);
      expect(sockets).toBeLessThanOrEqual(1);

      // zoe leaves: the list follows.
      zoe.close();
      await page.waitForSelector(`#presence li[data-identity="zoe"]`, { state: "detached", timeout: 10_000 });

      // A refused in-band token: the reason shown, the session goes on.
      await page.fill("#token", auth.token("page-user", { secret: "y".repeat(40) }));
      await page.click("#retoken");
      await page.waitForFunction(() => /Token refused: .*signature/.test(document.querySelector("#refusal")!.textContent!), undefined, { timeout: 5000 });
      expect(await page.getAttribute("#state", "data-state")).toBe("open");

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "page-auth.png"), fullPage: true });

      // A bad token on connect: closed 4001 with the reason, no retry loop.
      await page.fill("#token", "not-a-token");
      await page.click("#connect");
      await page.waitForSelector('#state[data-state="closed"]', { timeout: 10_000 });
      expect(await page.textContent("#refusal")).toMatch(/token — malformed token/);
      expect(await page.textContent("#reconnects")).toBe("0");
      expect(consoleErrors).toEqual([]);
      await page.close();
    } finally {
      await b.stop();
      auth.cleanup();
    }
  });
  it("a full bridge: the page shows the refusal's reason (4503) and connects once a slot frees", async () => {
    // Two connections in all. The page's own HTTP connection is let go after the 0.5 s
    // handshake deadline; then two sockets from here fill the bridge.
    const b = await startBridge({ args: ["--max_connections=2", "--handshake_timeout=0.5s"] });
    const holders: WebSocket[] = [];
    try {
      const page = await ctx!.newPage();
      const consoleErrors: string[] = [];
      page.on("pageerror", (e) => consoleErrors.push(String(e)));
      await page.goto(`http://127.0.0.1:${b.wsPort}/`);
      // A holder is in when its subscription is confirmed; a 4503 (the page's connection not let
      // go yet) is retried, bounded.
      const hold = async (): Promise<WebSocket> => {
        for (let attempt = 0; attempt < 50; attempt++) {
          const sock = new WebSocket(`${b.wsUrl}/ws/circles/holder?ack=1`);
          const ok = await new Promise<boolean>((res) => {
            sock.once("message", () => res(true));
            sock.once("close", () => res(false));
            sock.once("error", () => res(false));
          });
          if (ok) return sock;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error("could not fill the bridge's connection slots");
      };
      holders.push(await hold(), await hold());

      await page.fill("#channel", `circles/full-${Date.now()}`);
      await page.click("#connect");
      await page.waitForFunction(() => /Refused: too many connections \(4503\), retrying/.test(document.querySelector("#refusal")!.textContent!), undefined, { timeout: 10_000 });
      // (#state flips between open — the 101 — and reconnecting while it retries.)
      expect(await page.textContent("#events")).toMatch(/refused by the bridge \(4503 too many connections\)/);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "page-refused.png"), fullPage: true });

      // A slot frees: the page's next attempt gets in and the refusal goes away.
      holders.shift()!.close();
      await page.waitForSelector('#channels li[data-state="subscribed"]', { timeout: 20_000 });
      expect(await page.textContent("#refusal")).toBe("");
      // Backoff, not a storm: a handful of attempts in the seconds it took.
      const reconnects = Number(await page.textContent("#reconnects"));
      expect(reconnects).toBeGreaterThanOrEqual(1);
      expect(reconnects).toBeLessThanOrEqual(10);
      expect(consoleErrors).toEqual([]);
      await page.close();
    } finally {
      for (const h of holders) h.close();
      await b.stop();
    }
  });
});
