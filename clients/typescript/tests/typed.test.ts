// Typed channels at run time, against the real bridge: the bridge refuses a type the channel's
// namespace does not carry (unary and in a stream), delivers the ones it does, and leaves untyped
// namespaces alone; the generated declarations match what the bridge enforces; and a
// Subscription drops what its type says it cannot get (only a bridge built from another proto
// could send it; a scripted socket stands in for one). tests/typed-types.ts is the type side.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { BridgeClient, channelCarries, channelTypes, namespaceOf, type BridgeEvent, type CircleEvent } from "../src/index.js";
import { BridgePublisher } from "../src/publisher.js";
import { startBridge, type RunningBridge } from "./helpers/bridge.js";
import { nextOf } from "./helpers/wait.js";

let bridge: RunningBridge;
let publisher: BridgePublisher;
let seq = 0;
// Typed as `${ns}/${string}`, so subscriptions narrow as they would on a literal channel name.
const unique = <N extends string>(ns: N) => `${ns}/t${process.pid}-${Date.now()}-${++seq}` as `${N}/${string}`;

beforeAll(async () => {
  // GatheRing's namespaces (typed by events.proto) plus `rooms`, which it does not type.
  bridge = await startBridge({ args: ["--namespaces=circles:broadcast:history=100:ttl=300:presence,workspace:history=100:ttl=300,agents:history=50:ttl=120,rooms:history=10"] });
  publisher = new BridgePublisher(bridge.grpcTarget);
});
afterAll(async () => {
  publisher?.close();
  await bridge?.stop();
});

describe("typed channels against the bridge", () => {
  it("refuses a workspace event into a circle with INVALID_ARGUMENT and the allowed types", async () => {
    const channel = unique("circles");
    // As a channel only known at run time (`string`) the type system lets it through; the bridge refuses it.
    const err: any = await publisher.publish(channel as string, "file_changed", { path: "a.txt" }).then(
      () => undefined,
      (e) => e,
    );
    expect(err?.code).toBe(3); // INVALID_ARGUMENT
    expect(err.details).toBe(
      `channel '${channel}' does not carry file_changed events: namespace 'circles' is typed and carries ` +
        "agent_message, agent_joined, agent_left, circle_status, error, custom (events.proto, channel_types)",
    );
  });

  it("delivers the allowed types to a narrowed subscription, and the stream goes on past a refusal", async () => {
    const channel = unique("circles");
    const c = new BridgeClient({ url: bridge.wsUrl, WebSocket, channels: [], reconnect: false });
    try {
      await c.connect();
      const sub = c.subscribe(channel);
      await sub.ready;
      const got: CircleEvent[] = [];
      sub.onEvent((e) => got.push(e));
      const message = nextOf<CircleEvent>("the agent_message", (fn) => sub.onEvent(fn), (e) => e.type === "agent_message");
      const custom = nextOf<CircleEvent>("the custom event", (fn) => sub.onEvent(fn), (x) => x.type === "tool_call");
      const res = await publisher.publishStream([
        { channel, type: "git_status", data: { branch: "main" } },
        { channel, type: "agent_message", data: { agentId: 7, content: "allowed" } },
        { channel, type: "tool_call", data: { tool: "grep" } },
      ]);
      expect(res.acceptedNumber).toBe(2);
      expect(res.rejectedNumber).toBe(1);
      expect(res.rejections[0]).toMatchObject({ index: 0n, code: "INVALID_ARGUMENT" });
      expect(res.rejections[0].message).toContain(`channel '${channel}' does not carry git_status events`);
      const e = await message;
      expect(!e.custom && e.type === "agent_message" && e.data.content).toBe("allowed");
      await custom;
      expect(got.map((x) => x.type)).toEqual(["agent_message", "tool_call"]);
    } finally {
      c.close();
    }
  });

  it("accepts anything on an untyped namespace", async () => {
    const channel = unique("rooms");
    await publisher.publish(channel, "file_changed", { path: "x" });
    await publisher.publish(channel, "git_status", { branch: "main" });
    await publisher.publish(channel, "whatever", { n: 1 });
  });

  it("the generated declarations are what the bridge enforces, for every namespace and type", async () => {
    const types = ["agent_message", "agent_joined", "agent_left", "circle_status", "file_changed", "file_created", "file_deleted", "git_status", "error"] as const;
    const data: Record<(typeof types)[number], any> = {
      agent_message: { content: "c" },
      agent_joined: { agentId: 1 },
      agent_left: { agentId: 1 },
      circle_status: { status: "idle" },
      file_changed: { path: "a" },
      file_created: { path: "a" },
      file_deleted: { path: "a" },
      git_status: { branch: "b" },
      error: { code: "E" },
    };
    expect(Object.keys(channelTypes).sort()).toEqual(["agents", "circles", "workspace"]);
    for (const ns of ["circles", "workspace", "agents", "rooms"]) {
      const channel = unique(ns);
      for (const [type, custom] of [...types.map((t) => [t, false] as const), ["tool_call", true] as const]) {
        const accepted = await publisher.publish(channel, type, custom ? { x: 1 } : data[type as (typeof types)[number]]).then(
          () => true,
          (e) => (e.code === 3 ? false : Promise.reject(e)),
        );
        expect(accepted, `${type} on ${ns}`).toBe(channelCarries(channel, type, custom));
      }
    }
  });
});

describe("typed channels in the client", () => {
  class FakeSocket {
    static last: FakeSocket;
    readyState = 0;
    onopen: ((ev: unknown) => void) | null = null;
    onmessage: ((ev: { data: unknown }) => void) | null = null;
    onclose: ((ev: { code: number; reason: string }) => void) | null = null;
    onerror: ((ev: unknown) => void) | null = null;
    constructor(readonly url: string) {
      FakeSocket.last = this;
    }
    send() {}
    close(code = 1000, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }

  it("namespaceOf and channelCarries follow the declarations", () => {
    expect(namespaceOf("circles/dev-team")).toBe("circles");
    expect(channelCarries("circles/x", "agent_message", false)).toBe(true);
    expect(channelCarries("circles/x", "file_changed", false)).toBe(false);
    expect(channelCarries("workspace/1", "tool_call", true)).toBe(false);
    expect(channelCarries("rooms/a", "file_changed", false)).toBe(true);
  });

  it("a subscription drops an event of a type its channel does not carry; the client still sees it", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const c = new BridgeClient({ url: "ws://bridge.test/ws/workspace/1", WebSocket: FakeSocket, reconnect: false });
    try {
      c.connect().catch(() => undefined);
      const s = FakeSocket.last;
      s.readyState = 1;
      s.onopen?.({});
      s.onmessage?.({ data: JSON.stringify({ type: "subscribed", channel: "workspace/1", epoch: "e", offset: 0 }) });
      const sub = c.subscription("workspace/1")!;
      const onSub: string[] = [];
      const onClient: BridgeEvent[] = [];
      sub.onEvent((e) => onSub.push(e.type));
      c.onEvent((e) => onClient.push(e));
      const frame = (type: string, offset: number, data: object) =>
        s.onmessage?.({ data: JSON.stringify({ type, channel: "workspace/1", offset, timestamp: "2026-11-25T17:00:00.123Z", data }) });
      frame("circle_status", 1, { status: "not here" });
      frame("tool_call", 2, { tool: "grep" });
      frame("file_changed", 3, { path: "a" });
      frame("circle_status", 4, { status: "again" }); // dropped too, not logged twice
      expect(onSub).toEqual(["file_changed"]);
      expect(onClient.map((e) => e.type)).toEqual(["circle_status", "tool_call", "file_changed", "circle_status"]);
      expect(warn).toHaveBeenCalledTimes(2);
      expect(String(warn.mock.calls[0][0])).toContain("dropped a circle_status event on workspace/1");
    } finally {
      c.close();
      warn.mockRestore();
    }
  });
});
