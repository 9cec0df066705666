// Tokens that last and errors the application can see, against the real bridge with --auth=token:
// getToken for the first connection, in-band refresh before the bridge's deadline, a fresh token
// after expiry, refusals terminal and reported once; terminal versus retryable closes, with the
// connection attempts counted (no reconnect storm); the publisher's credentials.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BridgeClient, BridgeError, type BridgeClientOptions, type BridgeEvent, type CloseInfo } from "../src/index.js";
import { BridgePublisher } from "../src/publisher.js";
import { testAuth, type TestAuth } from "./helpers/auth.js";
import { startBridge, type RunningBridge } from "./helpers/bridge.js";
import { nextOf, waitUntil } from "./helpers/wait.js";

let auth: TestAuth;
let bridge: RunningBridge;
let publisher: BridgePublisher;
const clients: BridgeClient[] = [];
let seq = 0;
const unique = (ns: string) => `${ns}/a${process.pid}-${Date.now()}-${++seq}`;

/** A `ws` that counts the sockets it opens (connection attempts). */
function countingWS() {
  const urls: string[] = [];
  class Counting extends WebSocket {
    constructor(url: string) {
      super(url);
      urls.push(url);
    }
  }
  return { WS: Counting as any, urls };
}

function client(opts: Partial<BridgeClientOptions>): BridgeClient {
  const c = new BridgeClient({ url: bridge.wsUrl, WebSocket, reconnect: { minDelayMs: 50, maxDelayMs: 500 }, ...opts });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  auth = testAuth();
  bridge = await startBridge({ args: auth.args });
  publisher = new BridgePublisher(bridge.grpcTarget, { apiKey: auth.apiKey });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(async () => {
  publisher?.close();
  await bridge?.stop();
  auth?.cleanup();
});

describe("getToken", () => {
  it("refreshes in-band before the bridge's deadline: one socket, no close, events keep coming", async () => {
    const channel = unique("circles");
    const { WS, urls } = countingWS();
    const closes: CloseInfo[] = [];
    const deadlines: Date[] = [];
    const c = client({ url: `${bridge.wsUrl}/ws/${channel}`, WebSocket: WS, getToken: async () => auth.token("ada", { ttlSec: 3 }) });
    c.onClose((i) => closes.push(i));
    c.onAuthenticated((a) => a.expiresAt && deadlines.push(a.expiresAt));
    await c.connect();
    expect(c.identity).toBe("ada");
    expect(c.expiresAt!.getTime() - Date.now()).toBeLessThanOrEqual(3000);
    // Two refreshes (each about a second before the deadline) carry the socket past the first
    // token's expiry.
    await waitUntil("two in-band refreshes", () => deadlines.length >= 3, 8000);
    expect(c.tokenRequests).toBe(3);
    expect(deadlines[2].getTime()).toBeGreaterThan(deadlines[0].getTime());
    expect(Date.now()).toBeGreaterThan(deadlines[0].getTime());
    const ev = nextOf<BridgeEvent>("event after the refreshes", (fn) => c.onEvent(fn));
    await publisher.publish(channel, "agent_message", { content: "still here" });
    expect((await ev).data).toMatchObject({ content: "still here" });
    expect(closes).toEqual([]);
    expect(urls).toHaveLength(1);
    expect(c.reconnects).toBe(0);
  });

  it("a refused refresh is terminal and reported once", async () => {
    const { WS, urls } = countingWS();
    let n = 0;
    const c = client({
      url: `${bridge.wsUrl}/ws/${unique("circles")}`,
      WebSocket: WS,
      // The second token is signed with another secret.
      getToken: () => auth.token("bob", { ttlSec: 2, secret: ++n === 1 ? undefined : "x".repeat(40) }),
    });
    const errors: BridgeError[] = [];
    const closes: CloseInfo[] = [];
    c.onError((e) => errors.push(e));
    c.onClose((i) => closes.push(i));
    await c.connect();
    await waitUntil("the client to stop", () => c.state === "closed", 5000);
    // Past the first token's deadline: nothing more happens.
    await new Promise((r) => setTimeout(r, 1500));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: "unauthenticated", request: "auth" });
    expect(errors[0].message).toMatch(/signature/);
    expect(closes).toEqual([{ code: 4001, reason: errors[0].message, willReconnect: false }]);
    expect(c.error).toBe(errors[0]);
    expect(urls).toHaveLength(1);
    expect(n).toBe(2);
  });

  it("gets a fresh token for each reconnection, and after the bridge closed an expired one", async () => {
    const channel = unique("circles");
    const { WS, urls } = countingWS();
    let failRefresh = true;
    const c = client({
      url: `${bridge.wsUrl}/ws/${channel}`,
      WebSocket: WS,
      getToken: () => {
        // The first in-band refresh fails (the token service is down): the bridge closes 4001
        // at the deadline, and the reconnection gets a token again.
        if (c.tokenRequests === 2 && failRefresh) {
          failRefresh = false;
          throw new Error("token service down");
        }
        return auth.token("cy", { ttlSec: 2 });
      },
    });
    const errors: BridgeError[] = [];
    c.onError((e) => errors.push(e));
    await c.connect();
    const closed = await nextOf<CloseInfo>("close 4001 at expiry", (fn) => c.onClose(fn), () => true, 6000);
    expect(closed).toMatchObject({ code: 4001, reason: "token expired", willReconnect: true });
    await waitUntil("reconnected", () => c.isSubscribed && urls.length === 2, 5000);
    expect(errors.map((e) => e.code)).toEqual(["token_error"]);
    expect(urls[0]).not.toBe(urls[1]); // another token in ?token=
    // A lost socket: reconnects with yet another token.
    const before = c.tokenRequests;
    c.reconnect();
    await waitUntil("reconnected again", () => c.isSubscribed && urls.length === 3, 5000);
    expect(c.tokenRequests).toBeGreaterThan(before);
    expect(c.state).toBe("open");
  });

  it("a token refused on connect is terminal: one attempt, the reason surfaced", async () => {
    const { WS, urls } = countingWS();
    let calls = 0;
    const c = client({ url: `${bridge.wsUrl}/ws/${unique("circles")}`, WebSocket: WS, getToken: () => (calls++, "not.a.token") });
    const errors: BridgeError[] = [];
    c.onError((e) => errors.push(e));
    await expect(c.connect()).rejects.toMatchObject({ code: "close_4001", closeCode: 4001 });
    await new Promise((r) => setTimeout(r, 500));
    expect(urls).toHaveLength(1);
    expect(calls).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/4001 \(malformed token\)/);
  });
});

describe("terminal and retryable closes", () => {
  it("4003 (channel outside the token's grants) stops, naming the channel", async () => {
    const channel = unique("circles");
    const { WS, urls } = countingWS();
    const c = client({ url: `${bridge.wsUrl}/ws/${channel}`, WebSocket: WS, token: auth.token("dee", { channels: "workspace/*" }) });
    const sub = c.subscription(channel)!;
    await expect(c.connect()).rejects.toMatchObject({ code: "close_4003", channel });
    await expect(sub.ready).rejects.toBeInstanceOf(BridgeError);
    expect(sub.state).toBe("unsubscribed");
    expect(sub.error?.message).toMatch(/does not grant/);
    await new Promise((r) => setTimeout(r, 300));
    expect(urls).toHaveLength(1);
  });

  it("4004 right after the upgrade (unknown namespace) stops at once with the bridge's reason", async () => {
    const { WS, urls } = countingWS();
    const closes: CloseInfo[] = [];
    const errors: BridgeError[] = [];
    const c = client({ url: `${bridge.wsUrl}/ws/nowhere/x`, WebSocket: WS, token: auth.token("eve") });
    c.onClose((i) => closes.push(i));
    c.onError((e) => errors.push(e));
    const sub = c.subscription("nowhere/x")!;
    await expect(c.connect()).rejects.toMatchObject({ code: "close_4004", closeCode: 4004, channel: "nowhere/x" });
    await expect(sub.ready).rejects.toMatchObject({ code: "close_4004" });
    await new Promise((r) => setTimeout(r, 300));
    expect(urls).toHaveLength(1);
    expect(closes).toEqual([{ code: 4004, reason: "unknown namespace 'nowhere'", willReconnect: false }]);
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toContain("unknown namespace 'nowhere'");
    expect(c.state).toBe("closed");
  });

  it("4400 (a bad epoch) is terminal too, the reason surfaced once", async () => {
    const { WS, urls } = countingWS();
    const errors: BridgeError[] = [];
    const closes: CloseInfo[] = [];
    const channel = unique("circles");
    const c = client({ url: bridge.wsUrl, WebSocket: WS, token: auth.token("eve") });
    c.onError((e) => errors.push(e));
    c.onClose((i) => closes.push(i));
    // One channel goes on the path, with its position as ?since=&epoch=: an epoch over 64 bytes.
    const sub = c.subscribe(channel, { since: 3, epoch: "e".repeat(65) });
    await expect(c.connect()).rejects.toMatchObject({ code: "close_4400", closeCode: 4400, channel });
    await expect(sub.ready).rejects.toMatchObject({ code: "close_4400" });
    await new Promise((r) => setTimeout(r, 300));
    expect(urls).toHaveLength(1);
    expect(errors).toHaveLength(1);
    expect(closes).toEqual([{ code: 4400, reason: "epoch must be valid UTF-8 of at most 64 bytes", willReconnect: false }]);
  });

  it("retries a refused connection with bounded backoff: attempts counted, no storm", async () => {
    // Nothing listens on port 1: each attempt fails at once (1006).
    const { WS, urls } = countingWS();
    const c = client({ url: "ws://127.0.0.1:1/ws/circles/x", WebSocket: WS, reconnect: { minDelayMs: 100, maxDelayMs: 400 }, random: () => 1 });
    const delays: number[] = [];
    c.onState((s) => s.delayMs !== undefined && delays.push(s.delayMs));
    c.connect().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1500));
    c.close();
    // Delays 100, 200, 400, 400, ...: at most 6 attempts fit in 1.5 s.
    expect(urls.length).toBeGreaterThanOrEqual(3);
    expect(urls.length).toBeLessThanOrEqual(6);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 400]);
  });

  it("4503 (the bridge is full) is retried with backoff, attempts counted, the reason kept", async () => {
    const full = await startBridge({ args: ["--max_connections=1"] });
    try {
      const channel = unique("circles");
      const holder = new BridgeClient({ url: `${full.wsUrl}/ws/${channel}`, WebSocket, reconnect: false });
      await holder.connect();
      const { WS, urls } = countingWS();
      const closes: CloseInfo[] = [];
      const delays: number[] = [];
      const c = client({ url: `${full.wsUrl}/ws/${channel}`, WebSocket: WS, reconnect: { minDelayMs: 40, maxDelayMs: 80, maxAttempts: 3 }, random: () => 1 });
      c.onClose((i) => closes.push(i));
      c.onState((s) => s.delayMs !== undefined && delays.push(s.delayMs));
      await expect(c.connect()).rejects.toMatchObject({ code: "close_4503", closeCode: 4503 });
      expect(urls).toHaveLength(4); // the first attempt and maxAttempts retries: no storm
      expect(delays).toEqual([40, 80, 80]);
      expect(closes.map((i) => [i.code, i.reason, i.willReconnect])).toEqual([
        [4503, "too many connections", true],
        [4503, "too many connections", true],
        [4503, "too many connections", true],
        [4503, "too many connections", false],
      ]);
      expect(c.error?.message).toMatch(/4503 \(too many connections\); gave up after 3 attempts/);
      holder.close();
    } finally {
      await full.stop();
    }
  });

  it("4429 (too many connections from one address) is retried until a slot frees", async () => {
    const limited = await startBridge({ args: ["--max_connections_per_ip=1", "--per_ip_exempt_loopback=false"] });
    try {
      const channel = unique("circles");
      const first = new BridgeClient({ url: `${limited.wsUrl}/ws/${channel}`, WebSocket, reconnect: false });
      await first.connect();
      const { WS, urls } = countingWS();
      const second = client({ url: `${limited.wsUrl}/ws/${channel}`, WebSocket: WS, reconnect: { minDelayMs: 50, maxDelayMs: 100 } });
      const refused = nextOf<CloseInfo>("a 4429", (fn) => second.onClose(fn));
      const connected = second.connect();
      expect(await refused).toEqual({ code: 4429, reason: "too many connections from this address", willReconnect: true });
      first.close();
      await connected;
      expect(urls.length).toBeGreaterThanOrEqual(2);
      expect(second.state).toBe("open");
    } finally {
      await limited.stop();
    }
  });
});

describe("publisher credentials", () => {
  it("sends a token or API key as authorization metadata; offsets JSON-safe", async () => {
    const channel = unique("circles");
    const anonymous = new BridgePublisher(bridge.grpcTarget);
    try {
      await expect(anonymous.publish(channel, "agent_message", { content: "x" })).rejects.toMatchObject({ code: 16 }); // UNAUTHENTICATED
      // Per-call metadata works too.
      const r0 = await anonymous.publish(channel, "agent_message", { content: "x" }, { metadata: { authorization: `Bearer ${auth.apiKey}` } });
      expect(r0.offsetNumber).toBe(1);
    } finally {
      anonymous.close();
    }
    const withJwt = new BridgePublisher(bridge.grpcTarget, { getToken: () => auth.token("svc", { publish: "circles/*" }) });
    try {
      const r = await withJwt.publish(channel, "agent_message", { content: "y" });
      expect(r.offset).toBe(2n);
      expect(r.offsetNumber).toBe(2);
      expect(r.offsetString).toBe("2");
      const json = JSON.parse(JSON.stringify(r));
      expect(json).toMatchObject({ offset: "2", epoch: r.epoch });
      await expect(withJwt.publish(unique("workspace"), "file_deleted", { path: "a" })).rejects.toMatchObject({ code: 7 }); // PERMISSION_DENIED
      const s = await withJwt.publishStream([{ channel, type: "agent_left", data: { agentId: 1 } }]);
      expect([s.acceptedNumber, s.rejectedNumber]).toEqual([1, 0]);
      expect(JSON.parse(JSON.stringify(s))).toMatchObject({ accepted: "1" });
    } finally {
      withJwt.close();
    }
  });
});
