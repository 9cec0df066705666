// The admin dashboard (/admin on the admin listener, src/admin/dashboard) in Debian's Chromium,
// with auth on: refused without an admin token, then live numbers after real clients connect and
// a backend publishes (connections, the busiest channel, a disconnect), charts drawn by uPlot;
// screenshot in test-artifacts/dashboard.png.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BrowserContext } from "playwright-core";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BridgeClient } from "../../src/index.js";
import { BridgePublisher } from "../../src/publisher.js";
import { bridgeBinary, startBridge, type RunningBridge } from "../helpers/bridge.js";
import { launchChromium } from "../helpers/chromium.js";
import { testAuth, type TestAuth } from "../helpers/auth.js";

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const ARTIFACTS = join(REPO, "test-artifacts");

let auth: TestAuth | undefined;
let bridge: RunningBridge | undefined;
let ctx: BrowserContext | undefined;
let closeBrowser: (() => Promise<void>) | undefined;

beforeAll(async () => {
  auth = testAuth();
  bridge = await startBridge({ args: [...auth.args, "--admin_port=0"] });
  ({ ctx, close: closeBrowser } = await launchChromium());
});

afterAll(async () => {
  await closeBrowser?.();
  await bridge?.stop();
  auth?.cleanup();
});

// An admin token from the bridge's own `token --admin` subcommand.
function adminToken(): string {
  const secretFlag = auth!.args.find((a) => a.startsWith("--auth_hs256_secret_file="))!;
  return execFileSync(bridgeBinary(), ["token", secretFlag, "--sub=operator", "--admin"], { encoding: "utf8" }).trim();
}

describe("admin dashboard", () => {
  it("needs an admin token, then shows live connections, the busiest channel and disconnects", async () => {
    const b = bridge!;
    expect(b.adminPort).toBeGreaterThan(0);
    expect(b.adminPort).not.toBe(b.wsPort);
    const base = `http://127.0.0.1:${b.adminPort}`;
    const page = ctx!.pages()[0] ?? (await ctx!.newPage());
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(m.text());
    });

    expect((await page.goto(`${base}/admin`))?.status()).toBe(401);
    expect((await page.goto(`${base}/admin?token=${auth!.token("alice")}`))?.status()).toBe(403);
    const resp = await page.goto(`${base}/admin?token=${adminToken()}`);
    expect(resp?.status()).toBe(200);
    expect(await page.title()).toBe("gathering-bridge admin");
    problems.length = 0; // the refusals above were console errors; from here on none is expected
    await page.waitForSelector('#feed[data-state="open"]', { timeout: 10_000 });
    await page.waitForSelector('#status[data-status="ok"]', { timeout: 10_000 });

    const stamp = Date.now();
    const room = `circles/dash-${stamp}`;
    const busy = `workspace/busy-${stamp}`;
    const clients = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const c = new BridgeClient({ url: `${b.wsUrl}/ws/${room}`, WebSocket, reconnect: false, token: auth!.token(`user-${i}`) });
        await c.connect();
        return c;
      }),
    );
    const pub = new BridgePublisher(b.grpcTarget, { apiKey: auth!.apiKey });
    try {
      for (let i = 0; i < 12; i++) await pub.publish(busy, "file_changed", { path: `f${i}.txt` });
      await pub.publish(room, "agent_message", { content: "hello" });
    } finally {
      pub.close();
    }

    // Live numbers: the three clients, the busy channel at the top of the table.
    await page.waitForFunction(() => Number(document.querySelector("#connections")!.textContent) === 3, undefined, { timeout: 10_000 });
    // (The 12 publishes may straddle two one-second samples: the busy channel tops either.)
    const top = await page.waitForFunction(
      (c) => {
        const r = document.querySelector("#busiest tbody tr:first-child");
        return r?.getAttribute("data-channel") === c ? Number(r.getAttribute("data-messages")) : false;
      },
      busy,
      { timeout: 10_000 },
    );
    expect(await top.jsonValue()).toBeGreaterThanOrEqual(1);
    expect(Number(await page.textContent("#subscriptions"))).toBeGreaterThanOrEqual(3);
    expect(await page.getAttribute("#broker", "data-mode")).toBe("embedded");
    // The node table: embedded, this node alone, with its row filled in.
    expect(await page.locator('#nodes tbody tr[data-self="true"]').count()).toBe(1);
    expect(await page.locator("#nodes tbody tr").count()).toBe(1);
    expect(await page.textContent('#nodes tbody tr[data-self="true"] td:nth-child(7)')).toBe("up");
    // Three uPlot charts, drawn on canvases.
    expect(await page.locator(".uplot canvas").count()).toBe(3);

    // A client leaves: its close is listed with its code.
    clients[0].close();
    await page.waitForSelector('#closes tbody tr[data-code="1000"]', { timeout: 10_000 });
    await page.waitForFunction(() => Number(document.querySelector("#connections")!.textContent) === 2, undefined, { timeout: 10_000 });
    // Let the charts collect a few points for the screenshot.
    await page.waitForFunction(() => document.querySelectorAll(".uplot").length === 3 && performance.now() > 4000, undefined, { timeout: 10_000 });
    expect(problems).toEqual([]);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    for (const c of clients.slice(1)) c.close();
  });
});
