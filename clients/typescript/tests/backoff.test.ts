// The reconnect policy on its own, with a scripted WebSocket (no bridge needed): exponential
// bounds with full jitter, the backoff starting over after a subscription, the stop codes, and
// the resume positions of the bridge's `reconnect` frame.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BridgeClient, type BridgeEvent, type GoingAwayInfo, type StateChange } from "../src/index.js";

class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(s: string) {
    this.sent.push(s);
  }
  close(code = 1000, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  // Scripted server side:
  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(obj: unknown) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code: number, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const last = () => FakeSocket.all[FakeSocket.all.length - 1];
/** Frames sent, without the `id` every control frame carries (checked to be there). */
const sentFrames = (s: FakeSocket) =>
  s.sent.map((t) => {
    const { id, ...rest } = JSON.parse(t);
    if (rest.type !== "pong") expect(typeof id).toBe("string");
    return rest;
  });

describe("reconnect policy", () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.useFakeTimers();
  });
  afterEach(() => vi.useRealTimers());

  it("waits random * min(max, min * factor^n) between attempts and starts over after a subscription", () => {
    const states: StateChange[] = [];
    const c = new BridgeClient({
      url: "ws://bridge.test/ws/circles/a",
      WebSocket: FakeSocket,
      reconnect: { minDelayMs: 100, maxDelayMs: 1000, factor: 3 },
      random: () => 0.5,
    });
    c.onState((s) => states.push(s));
    c.connect().catch(() => undefined);
    expect(FakeSocket.all).toHaveLength(1);
    expect(last().url).toBe("ws://bridge.test/ws/circles/a?ack=1");
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      last().drop(1006);
      delays.push(states[states.length - 1].delayMs!);
      vi.advanceTimersByTime(delays[i]);
      expect(FakeSocket.all).toHaveLength(i + 2);
    }
    // 0.5 * [100, 300, 900, 1000 (capped), 1000]
    expect(delays).toEqual([50, 150, 450, 500, 500]);
    expect(c.reconnects).toBe(5);
    last().accept();
    last().frame({ type: "subscribed", channel: "circles/a", epoch: "e1", offset: 7 });
    expect(c.state).toBe("open");
    last().drop(1001);
    expect(states[states.length - 1]).toMatchObject({ state: "reconnecting", delayMs: 50 });
    vi.advanceTimersByTime(50);
    // The resume asks for what follows offset 7 of epoch e1.
    expect(last().url).toBe("ws://bridge.test/ws/circles/a?since=7&epoch=e1&ack=1");
    c.close();
  });

  it.each([1002, 1003, 1007, 1008, 4001, 4003, 4004, 4400])("stops for good on close code %i", async (code) => {
    const c = new BridgeClient({ url: "ws://bridge.test/ws/circles/a", WebSocket: FakeSocket, random: () => 0 });
    const p = c.connect();
    last().drop(code, "nope");
    await expect(p).rejects.toThrow(String(code));
    expect(c.state).toBe("closed");
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("stops after maxAttempts and never reconnects after close()", () => {
    const c = new BridgeClient({ url: "ws://bridge.test/", channels: ["circles/a"], WebSocket: FakeSocket, reconnect: { maxAttempts: 2, minDelayMs: 10 }, random: () => 1 });
    c.connect().catch(() => undefined);
    last().drop(1006);
    vi.advanceTimersByTime(10);
    last().drop(1006);
    vi.advanceTimersByTime(20);
    last().drop(1006);
    expect(c.state).toBe("closed");
    expect(FakeSocket.all).toHaveLength(3);

    const d = new BridgeClient({ url: "ws://bridge.test/ws/circles/a", WebSocket: FakeSocket, random: () => 1 });
    d.connect().catch(() => undefined);
    const s = last();
    d.close();
    expect(s.readyState).toBe(3);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(4);
  });

  it("multiplexes on /ws with auth and subscribe frames, resuming each channel", () => {
    const c = new BridgeClient({
      url: "ws://bridge.test",
      channels: ["circles/a", "workspace/1"],
      token: "t0k",
      tokenTransport: "frame",
      WebSocket: FakeSocket,
      random: () => 0,
    });
    let ready = false;
    c.connect().then(() => (ready = true));
    expect(last().url).toBe("ws://bridge.test/ws");
    last().accept();
    expect(sentFrames(last())).toEqual([
      { type: "auth", token: "t0k" },
      { type: "subscribe", channel: "circles/a" },
      { type: "subscribe", channel: "workspace/1" },
    ]);
    last().frame({ type: "subscribed", channel: "circles/a", epoch: "E", offset: 2 });
    last().frame({ type: "subscribed", channel: "workspace/1", epoch: "E", offset: 0 });
    last().frame({ type: "agent_message", channel: "circles/a", offset: 3, timestamp: "2026-11-25T17:00:00.123Z", data: { agent_id: 7 } });
    last().frame({ type: "ping" });
    expect(sentFrames(last()).pop()).toEqual({ type: "pong" });
    expect(() => c.send({ type: "message" })).toThrow(/several channels/);
    last().drop(1006);
    vi.advanceTimersByTime(0);
    last().accept();
    expect(sentFrames(last()).slice(1)).toEqual([
      { type: "subscribe", channel: "circles/a", since: 3, epoch: "E" },
      { type: "subscribe", channel: "workspace/1", since: 0, epoch: "E" },
    ]);
    expect(c.positions()).toEqual({ "circles/a": { epoch: "E", offset: 3 }, "workspace/1": { epoch: "E", offset: 0 } });
    c.close();
    return Promise.resolve().then(() => expect(ready).toBe(true));
  });

  it("takes the reconnect frame's positions for acknowledged channels and resumes from them after 1001", () => {
    const c = new BridgeClient({ url: "ws://bridge.test", channels: ["circles/a", "circles/b", "workspace/1"], WebSocket: FakeSocket, random: () => 0 });
    const away: GoingAwayInfo[] = [];
    const evs: BridgeEvent[] = [];
    const closes: unknown[] = [];
    c.onGoingAway((i) => away.push(i));
    c.onEvent((e) => evs.push(e));
    c.onClose((i) => closes.push(i));
    c.connect().catch(() => undefined);
    last().accept();
    // Answered by id, as a bridge with a broker answers: circles/b's answer is still to come.
    const idOf = (ch: string) => last().sent.map((t) => JSON.parse(t)).find((f) => f.channel === ch).id;
    last().frame({ type: "subscribed", channel: "circles/a", epoch: "E", offset: 2, id: idOf("circles/a") });
    last().frame({ type: "subscribed", channel: "workspace/1", epoch: "W", offset: 4, id: idOf("workspace/1") });
    last().frame({ type: "agent_message", channel: "circles/a", offset: 3, data: { agent_id: 7 } });
    // circles/b has no answer yet; circles/zz is not this client's; a broken entry is skipped.
    last().frame({
      type: "reconnect",
      reason: "server shutting down",
      positions: { "circles/a": { epoch: "E", offset: 5 }, "circles/b": { epoch: "E", offset: 1 }, "circles/zz": { epoch: "E", offset: 9 }, "workspace/1": { epoch: "W", offset: "x" } },
    });
    expect(away).toEqual([{ reason: "server shutting down", positions: { "circles/a": { epoch: "E", offset: 5 } } }]);
    expect(evs.map((e) => e.offset)).toEqual([3]);
    expect(c.positions()).toEqual({ "circles/a": { epoch: "E", offset: 5 }, "workspace/1": { epoch: "W", offset: 4 } });
    last().drop(1001, "server shutting down");
    expect(closes).toEqual([{ code: 1001, reason: "server shutting down", willReconnect: true }]);
    vi.advanceTimersByTime(0);
    last().accept();
    expect(sentFrames(last())).toEqual([
      { type: "subscribe", channel: "circles/a", since: 5, epoch: "E" },
      { type: "subscribe", channel: "circles/b" },
      { type: "subscribe", channel: "workspace/1", since: 4, epoch: "W" },
    ]);
    c.close();
  });

  it.each([1000, 1001, 1006, 1009, 1011, 1012, 1013, 4000, 4008, 4429])("retries after close code %i", (code) => {
    const c = new BridgeClient({ url: "ws://bridge.test/ws/circles/a", WebSocket: FakeSocket, random: () => 0 });
    const closes: unknown[] = [];
    c.onClose((i) => closes.push(i));
    c.connect().catch(() => undefined);
    last().accept();
    last().drop(code, "r");
    vi.advanceTimersByTime(0);
    expect(FakeSocket.all).toHaveLength(2);
    expect(closes).toEqual([{ code, reason: "r", willReconnect: true }]);
    c.close();
  });

  it("takes the HTTP status of a refused upgrade from ws's error: 4xx stops, 429 and 5xx retry", async () => {
    for (const [status, retried] of [[404, false], [400, false], [403, false], [429, true], [503, true]] as const) {
      FakeSocket.all = [];
      const c = new BridgeClient({ url: "ws://bridge.test/ws/circles/a", WebSocket: FakeSocket, random: () => 0 });
      const p = c.connect();
      p.catch(() => undefined);
      last().onerror?.({ message: `Unexpected server response: ${status}` });
      last().drop(1006);
      vi.advanceTimersByTime(0);
      expect([status, FakeSocket.all.length]).toEqual([status, retried ? 2 : 1]);
      if (!retried) await expect(p).rejects.toMatchObject({ code: `http_${status}` });
      c.close();
    }
  });

  it("with getToken, 4001 after the token was accepted (expiry) reconnects with a new token; before, it stops", async () => {
    let n = 0;
    const c = new BridgeClient({ url: "ws://bridge.test/ws/circles/a", WebSocket: FakeSocket, random: () => 0, getToken: () => `t${++n}` });
    c.connect().catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    expect(last().url).toBe("ws://bridge.test/ws/circles/a?token=t1&ack=1");
    last().accept();
    last().frame({ type: "authenticated", identity: "u", expires_at: new Date(Date.now() + 60_000).toISOString() });
    last().drop(4001, "token expired");
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all).toHaveLength(2);
    expect(last().url).toBe("ws://bridge.test/ws/circles/a?token=t2&ack=1");
    // The new token refused on connect: terminal.
    last().accept();
    last().drop(4001, "bad signature");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(2);
    expect(c.state).toBe("closed");
    expect(c.error).toMatchObject({ code: "close_4001", closeCode: 4001 });
  });

  it("refreshes before expires_at: refreshMarginMs ahead, in an auth frame", async () => {
    let n = 0;
    const c = new BridgeClient({ url: "ws://bridge.test/ws/circles/a", WebSocket: FakeSocket, getToken: () => `t${++n}`, refreshMarginMs: 5000 });
    c.connect().catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    last().accept();
    last().frame({ type: "authenticated", identity: "u", expires_at: new Date(Date.now() + 20_000).toISOString() });
    await vi.advanceTimersByTimeAsync(14_900);
    expect(n).toBe(1);
    await vi.advanceTimersByTimeAsync(200);
    expect(n).toBe(2);
    expect(sentFrames(last()).pop()).toEqual({ type: "auth", token: "t2" });
    c.close();
  });
});
