// BridgeClient and BridgePublisher against the real bridge (BRIDGE_BIN), over loopback.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BridgeClient, type BridgeClientOptions, type CloseInfo, type StateChange, type BridgeEvent, type Frame, type GapInfo, type SubscribedFrame } from "../src/index.js";
import { BridgePublisher } from "../src/publisher.js";
import { startBridge, type RunningBridge } from "./helpers/bridge.js";
import { collect, nextOf, waitUntil } from "./helpers/wait.js";

let bridge: RunningBridge;
let publisher: BridgePublisher;
const clients: BridgeClient[] = [];
let seq = 0;
const unique = (ns: string) => `${ns}/t${process.pid}-${Date.now()}-${++seq}`;

function client(opts: Partial<BridgeClientOptions> & { url?: string } = {}): BridgeClient {
  const c = new BridgeClient({ url: bridge.wsUrl, WebSocket, reconnect: { minDelayMs: 50, maxDelayMs: 500 }, ...opts });
  clients.push(c);
  return c;
}
const events = (c: BridgeClient) => (fn: (e: BridgeEvent) => void) => c.onEvent(fn);

beforeAll(async () => {
  // GatheRing's namespaces plus `rooms`, which events.proto leaves untyped (any event type).
  bridge = await startBridge({ args: ["--namespaces=circles:broadcast:history=100:ttl=300:presence,workspace:history=100:ttl=300,agents:history=50:ttl=120,rooms:history=100"] });
  publisher = new BridgePublisher(bridge.grpcTarget);
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(async () => {
  publisher?.close();
  const code = await bridge?.stop();
  expect(code, `bridge exit code on SIGTERM\n${bridge?.log()}`).toBe(0);
});

describe("decoding", () => {
  it("decodes every event type into its generated message", async () => {
    const channel = unique("rooms"); // untyped: every type in one channel
    const c = client({ url: `${bridge.wsUrl}/ws/${channel}` });
    await c.connect();
    const got = collect("events", events(c), 11, 10_000);
    const when = new Date("2026-11-25T17:00:00.123Z");
    const r1 = await publisher.publish(channel, "agent_message", { agentId: 7, content: "hi", agentName: "ada", messageId: "m1", replyTo: "m0", metadata: { model: "x", tokens: 12, tools: ["a", "b"], nested: { ok: true } } }, { timestamp: when });
    await publisher.publish(channel, "agent_joined", { agentId: 8, agentName: "bob", identity: "u-8" });
    await publisher.publish(channel, "agent_left", { agentId: 8, agentName: "bob", reason: "closed" });
    await publisher.publish(channel, "circle_status", { circle: "dev-team", status: "running", activeAgents: 3, detail: "sprint" });
    await publisher.publish(channel, "file_changed", { path: "src/a.ts", agentId: 7, diff: "@@ -1 +1 @@", sizeBytes: 5_000_000_000n });
    await publisher.publish(channel, "file_created", { path: "src/b.ts", agentId: 7, sizeBytes: 12n });
    await publisher.publish(channel, "file_deleted", { path: "src/c.ts", agentId: 7 });
    await publisher.publish(channel, "git_status", { branch: "main", commit: "abc123", ahead: 1, behind: 2, staged: ["a"], modified: ["b", "c"], untracked: ["d"] });
    await publisher.publish(channel, "error", { code: "build_failed", message: "exit 2" });
    await publisher.publish(channel, "build.finished", { ok: true, n: 3, tags: ["x"] });
    const last = await publisher.publish(channel, "agent_message", { agentId: 0, content: "" });
    expect(r1.offset).toBe(1n);
    expect(last.offset).toBe(11n);
    expect(r1.epoch).not.toBe("");

    const evs = await got.done;
    expect(evs.map((e) => e.type)).toEqual([
      "agent_message", "agent_joined", "agent_left", "circle_status", "file_changed", "file_created",
      "file_deleted", "git_status", "error", "build.finished", "agent_message",
    ]);
    expect(evs.map((e) => e.offset)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    for (const e of evs) {
      expect(e.channel).toBe(channel);
      expect(e.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const [am, aj, al, cs, fc, fcr, fd, gs, er, cu, empty] = evs;
    expect(am.date?.toISOString()).toBe(when.toISOString());
    if (am.custom || am.type !== "agent_message") throw new Error("agent_message expected");
    expect(am.data.$typeName).toBe("gathering.bridge.v1.AgentMessage");
    expect(am.data).toMatchObject({ agentId: 7, content: "hi", agentName: "ada", messageId: "m1", replyTo: "m0" });
    expect(am.data.metadata).toEqual({ model: "x", tokens: 12, tools: ["a", "b"], nested: { ok: true } });
    expect(am.frame.data).toMatchObject({ agent_id: 7, agent_name: "ada" }); // proto field names on the wire
    expect(aj.data).toMatchObject({ $typeName: "gathering.bridge.v1.AgentJoined", agentId: 8, agentName: "bob", identity: "u-8" });
    expect(al.data).toMatchObject({ $typeName: "gathering.bridge.v1.AgentLeft", agentId: 8, reason: "closed" });
    expect(cs.data).toMatchObject({ $typeName: "gathering.bridge.v1.CircleStatus", circle: "dev-team", status: "running", activeAgents: 3, detail: "sprint" });
    expect(fc.data).toMatchObject({ $typeName: "gathering.bridge.v1.FileChanged", path: "src/a.ts", agentId: 7, sizeBytes: 5_000_000_000n });
    expect(fc.frame.data).toMatchObject({ size_bytes: "5000000000" }); // int64 as a JSON string
    expect(fcr.data).toMatchObject({ $typeName: "gathering.bridge.v1.FileCreated", path: "src/b.ts", sizeBytes: 12n });
    expect(fd.data).toMatchObject({ $typeName: "gathering.bridge.v1.FileDeleted", path: "src/c.ts", agentId: 7 });
    expect(gs.data).toMatchObject({ $typeName: "gathering.bridge.v1.GitStatus", branch: "main", commit: "abc123", ahead: 1, behind: 2, staged: ["a"], modified: ["b", "c"], untracked: ["d"] });
    expect(er.data).toMatchObject({ $typeName: "gathering.bridge.v1.Error", code: "build_failed", message: "exit 2" });
    expect(cu.custom).toBe(true);
    expect(cu.data).toEqual({ ok: true, n: 3, tags: ["x"] });
    expect(empty.data).toMatchObject({ agentId: 0, content: "" });
    expect(empty.frame.data ?? {}).toEqual({}); // defaults omitted
  });

  it("routes typed handlers by type, custom types by their name", async () => {
    const channel = unique("circles");
    const c = client({ url: `${bridge.wsUrl}/ws/${channel}` });
    await c.connect();
    const msg = nextOf<[unknown, BridgeEvent]>("agent_message handler", (fn) => c.on("agent_message", (m, e) => fn([m, e])));
    const custom = nextOf<[unknown, BridgeEvent]>("deploy.done handler", (fn) => c.on("deploy.done", (d, e) => fn([d, e])));
    await publisher.publish(channel, "deploy.done", { env: "prod" });
    await publisher.publish(channel, "agent_message", { agentId: 1, content: "typed" });
    const [m] = await msg;
    const [d, de] = await custom;
    expect(m).toMatchObject({ $typeName: "gathering.bridge.v1.AgentMessage", content: "typed" });
    expect(d).toEqual({ env: "prod" });
    expect(de.offset).toBe(1);
  });
});

describe("channels and messages", () => {
  it("multiplexes several channels on one socket and relays client messages", async () => {
    const a = unique("circles");
    const w = unique("workspace");
    const g = unique("agents");
    const c = client({ channels: [a, w, g] });
    const subscribed: SubscribedFrame[] = [];
    c.onSubscribed((f) => subscribed.push(f));
    await c.connect();
    expect(subscribed.map((f) => f.channel).sort()).toEqual([a, w, g].sort());
    const got = collect("events on three channels", events(c), 3);
    await publisher.publish(w, "file_deleted", { path: "x" });
    await publisher.publish(g, "agent_joined", { agentId: 2 });
    await publisher.publish(a, "agent_message", { agentId: 3, content: "multi" });
    expect((await got.done).map((e) => [e.channel, e.type, e.offset])).toEqual([
      [w, "file_deleted", 1],
      [g, "agent_joined", 1],
      [a, "agent_message", 1],
    ]);

    // A second socket on the circle receives what the first sends there; the sender does not.
    const peer = client({ url: `${bridge.wsUrl}/ws/${a}` });
    await peer.connect();
    const relayed = nextOf<BridgeEvent>("relayed client message", (fn) => peer.onEvent(fn));
    const echo: Frame[] = [];
    c.onFrame((f) => f.type === "chat" && echo.push(f));
    expect(() => c.send({ type: "chat", content: "no channel" })).toThrow(/several channels/);
    expect(c.send({ type: "chat", content: "Hello" }, a)).toBe(true);
    const r = await relayed;
    expect(r).toMatchObject({ type: "chat", custom: true, channel: a, offset: 2 });
    expect(r.sender).toMatch(/^c-\d+$/);
    expect(r.data).toEqual({ content: "Hello" });
    // The sender's own frame never comes back: a later event on the same channel arrives alone,
    // and the offset its message took is not reported as a gap.
    const gaps: GapInfo[] = [];
    c.onGap((g) => gaps.push(g));
    const next = nextOf<BridgeEvent>("event after the chat", (fn) => c.onEvent(fn), (e) => e.channel === a);
    await publisher.publish(a, "agent_left", { agentId: 3 });
    expect((await next).offset).toBe(3);
    expect(echo).toEqual([]);
    expect(gaps).toEqual([]);
  });

  it("unsubscribes and subscribes at runtime", async () => {
    const a = unique("circles");
    const b = unique("circles");
    const c = client({ channels: [a, b] });
    await c.connect();
    const unsub = nextOf<Frame>("unsubscribed frame", (fn) => c.onFrame(fn), (f) => f.type === "unsubscribed");
    c.unsubscribe(a);
    expect((await unsub).channel).toBe(a);
    const seen: BridgeEvent[] = [];
    c.onEvent((e) => seen.push(e));
    await publisher.publish(a, "agent_message", { content: "not for me" });
    await publisher.publish(b, "agent_message", { content: "for me" });
    await waitUntil("the event on b", () => seen.find((e) => e.channel === b));
    expect(seen.filter((e) => e.channel === a)).toEqual([]);

    const sub = nextOf<SubscribedFrame>("subscribed to a again", (fn) => c.onSubscribed(fn), (f) => f.channel === a);
    c.subscribe(a);
    expect((await sub).offset).toBe(1);
    const ev = nextOf<BridgeEvent>("event on a", (fn) => c.onEvent(fn), (e) => e.channel === a);
    await publisher.publish(a, "agent_message", { content: "back" });
    expect((await ev).offset).toBe(2);
  });

  it("answers ping with pong both ways", async () => {
    const sent: string[] = [];
    class RecordingWS extends WebSocket {
      send(data: any, ...rest: any[]) {
        sent.push(String(data));
        return (super.send as any)(data, ...rest);
      }
    }
    const hb = await startBridge({ args: ["--heartbeat_interval=0.2s"] });
    try {
      const c = client({ url: `${hb.wsUrl}/ws/${unique("circles")}`, WebSocket: RecordingWS as any });
      await c.connect();
      expect(await c.ping(3000)).toBeGreaterThanOrEqual(0);
      await nextOf<Frame>("a JSON ping from the bridge", (fn) => c.onFrame(fn), (f) => f.type === "ping", 5000);
      await waitUntil("the automatic pong", () => sent.includes('{"type":"pong"}'));
    } finally {
      await hb.stop();
    }
  });

  it("publishes a stream and reports rejections", async () => {
    const channel = unique("circles");
    const c = client({ url: `${bridge.wsUrl}/ws/${channel}` });
    await c.connect();
    const got = collect("streamed events", events(c), 50, 10_000);
    async function* items() {
      for (let i = 0; i < 50; i++) {
        yield { channel, type: "agent_message" as const, data: { agentId: i, content: `n${i}` } };
        if (i === 10) yield { channel: "bad channel!", type: "agent_message" as const, data: { content: "x" } };
      }
    }
    const res = await publisher.publishStream(items());
    expect(res.accepted).toBe(50n);
    expect(res.rejected).toBe(1n);
    expect(res.rejections[0]).toMatchObject({ index: 11n, code: "INVALID_ARGUMENT" });
    const evs = await got.done;
    expect(evs.map((e) => e.offset)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(evs.map((e) => (e.data as { content: string }).content)).toEqual(Array.from({ length: 50 }, (_, i) => `n${i}`));
  });

  it("rejects invalid publishes with INVALID_ARGUMENT", async () => {
    await expect(publisher.publish("no-namespace!", "agent_message", { content: "x" })).rejects.toMatchObject({ code: 3 });
    await expect(publisher.publish(unique("circles"), "agent_message_but_reserved", {})).resolves.toBeTruthy();
    await expect(publisher.publish(unique("circles"), "subscribed", {})).rejects.toMatchObject({ code: 3 });
  });

  it("streams client frames to a backend Subscribe", async () => {
    const channel = unique("circles");
    const stream = publisher.subscribe([channel]);
    const c = client({ url: `${bridge.wsUrl}/ws/${channel}` });
    await c.connect();
    const it = stream[Symbol.asyncIterator]();
    const first = it.next();
    // The Subscribe call has no acknowledgement: send until the backend sees one (bounded).
    let n = 0;
    const pump = setInterval(() => c.send({ type: "hello", n: n++ }), 100);
    try {
      const r = await Promise.race([
        first,
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no ClientMessage on Subscribe within 5 s")), 5000)),
      ]);
      expect(r.done).toBe(false);
      const m = r.value!;
      expect(m.channel).toBe(channel);
      expect(m.connectionId).toMatch(/^c-\d+$/);
      expect(JSON.parse(m.json)).toMatchObject({ type: "hello" });
    } finally {
      clearInterval(pump);
      stream.cancel();
    }
  });
});

describe("history and presence", () => {
  it("reads a channel's history and members over gRPC", async () => {
    const channel = unique("circles");
    for (let i = 1; i <= 3; i++) await publisher.publish(channel, "agent_message", { content: `h${i}` });
    const h = await publisher.history(channel, { since: 1 });
    expect(h.offset).toBe(3n);
    expect(h.complete).toBe(true);
    expect(h.epoch).not.toBe("");
    expect(h.events.map((e) => [e.offset, e.type, (e.data as { content: string }).content])).toEqual([
      [2, "agent_message", "h2"],
      [3, "agent_message", "h3"],
    ]);

    // An observer (no identity) sees alice join; then Presence lists her.
    const observer = client({ url: `${bridge.wsUrl}/ws/${channel}` });
    await observer.connect();
    const joined = nextOf<BridgeEvent>("agent_joined for alice", (fn) => observer.onEvent(fn), (e) => e.type === "agent_joined");
    const alice = client({ url: `${bridge.wsUrl}/ws/${channel}`, clientId: "alice" });
    await alice.connect();
    const j = await joined;
    expect(j.data).toMatchObject({ $typeName: "gathering.bridge.v1.AgentJoined", identity: "alice" });
    const p = await publisher.presence(channel);
    expect(p.members.map((m) => [m.identity, m.connections])).toEqual([["alice", 1]]);
    expect(p.memberCount).toBe(1);
    expect(p.connectionCount).toBe(2);
    const left = nextOf<BridgeEvent>("agent_left for alice", (fn) => observer.onEvent(fn), (e) => e.type === "agent_left");
    alice.close();
    expect((await left).data).toMatchObject({ identity: "alice", reason: "closed" });
  });
});

describe("recovery", () => {
  it("resumes from a saved position without loss (resumeFrom)", async () => {
    const channel = unique("circles");
    const a = client({ url: `${bridge.wsUrl}/ws/${channel}` });
    await a.connect();
    const first = collect("first three", events(a), 3);
    for (let i = 1; i <= 3; i++) await publisher.publish(channel, "agent_message", { content: `m${i}` });
    await first.done;
    const pos = a.positions();
    expect(pos[channel].offset).toBe(3);
    a.close();
    for (let i = 4; i <= 6; i++) await publisher.publish(channel, "agent_message", { content: `m${i}` });

    const b = client({ url: `${bridge.wsUrl}/ws/${channel}`, resumeFrom: pos });
    const sub = nextOf<SubscribedFrame>("subscribed", (fn) => b.onSubscribed(fn));
    const replay = collect("replayed events", events(b), 3);
    await b.connect();
    expect(await sub).toMatchObject({ channel, recovered: true, epoch: pos[channel].epoch });
    expect((await replay.done).map((e) => [e.offset, (e.data as { content: string }).content])).toEqual([
      [4, "m4"],
      [5, "m5"],
      [6, "m6"],
    ]);
  });

  it("reports the exact gap when the history no longer covers the resume point", async () => {
    const small = await startBridge({ args: ["--namespaces=circles:broadcast:history=2:ttl=300,workspace:history=100:ttl=300,agents:history=50:ttl=120"] });
    const pub = new BridgePublisher(small.grpcTarget);
    try {
      const channel = unique("circles");
      const a = client({ url: `${small.wsUrl}/ws/${channel}` });
      await a.connect();
      const first = collect("first two", events(a), 2);
      for (let i = 1; i <= 2; i++) await pub.publish(channel, "agent_message", { content: `m${i}` });
      await first.done;
      const pos = a.positions();
      a.close();
      for (let i = 3; i <= 6; i++) await pub.publish(channel, "agent_message", { content: `m${i}` });

      const b = client({ url: `${small.wsUrl}/ws/${channel}`, resumeFrom: pos });
      const sub = nextOf<SubscribedFrame>("subscribed", (fn) => b.onSubscribed(fn));
      const gap = nextOf<GapInfo>("gap", (fn) => b.onGap(fn));
      const rest = collect("retained events", events(b), 2);
      await b.connect();
      expect(await sub).toMatchObject({ recovered: false, offset: 6 });
      expect(await gap).toEqual({ channel, from: 3, to: 4, epochChanged: false });
      expect((await rest.done).map((e) => e.offset)).toEqual([5, 6]);
    } finally {
      pub.close();
      await small.stop();
    }
  });

  it("reconnects by itself after losing the socket and replays what it missed", async () => {
    const channel = unique("circles");
    // A socket factory the test can cut: while `down`, connections go to a closed port.
    let down = false;
    const live = new Set<WebSocket>();
    class CuttableWS extends WebSocket {
      constructor(url: string) {
        super(down ? url.replace(/:\d+\//, ":1/") : url);
        live.add(this);
        this.addEventListener("close", () => live.delete(this));
      }
    }
    const c = client({ channels: [channel, unique("workspace")], WebSocket: CuttableWS as any, reconnect: { minDelayMs: 20, maxDelayMs: 200 } });
    const gaps: GapInfo[] = [];
    c.onGap((g) => gaps.push(g));
    await c.connect();
    const all = collect("six events", events(c), 6, 15_000);
    for (let i = 1; i <= 3; i++) await publisher.publish(channel, "agent_message", { content: `m${i}` });
    await waitUntil("three events", () => all.items.length >= 3);

    down = true;
    const reconnecting = nextOf<StateChange>("state reconnecting", (fn) => c.onState(fn), (s) => s.state === "reconnecting");
    for (const s of live) s.terminate();
    await reconnecting;
    for (let i = 4; i <= 6; i++) await publisher.publish(channel, "agent_message", { content: `m${i}` });
    // Let it fail at least once against the closed port, then let it through.
    await nextOf<CloseInfo>("a failed attempt", (fn) => c.onClose(fn), (i) => i.willReconnect, 5000);
    const resubscribed = nextOf<SubscribedFrame>("resubscription", (fn) => c.onSubscribed(fn), (f) => f.channel === channel, 10_000);
    down = false;
    expect(await resubscribed).toMatchObject({ recovered: true });
    const evs = await all.done;
    expect(evs.map((e) => e.offset)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(gaps).toEqual([]);
    expect(c.reconnects).toBeGreaterThanOrEqual(2);
    expect(c.state).toBe("open");
  });

  it("reconnects after the bridge restarts on the same ports", async () => {
    let b = await startBridge();
    const channel = unique("circles");
    try {
      const c = client({ url: `${b.wsUrl}/ws/${channel}`, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
      await c.connect();
      const pub1 = new BridgePublisher(b.grpcTarget);
      const e1 = nextOf<BridgeEvent>("event before restart", (fn) => c.onEvent(fn));
      const r1 = await pub1.publish(channel, "agent_message", { content: "before" });
      expect((await e1).offset).toBe(1);
      pub1.close();

      const closed = nextOf<CloseInfo>("close 1001", (fn) => c.onClose(fn));
      expect(await b.stop()).toBe(0);
      expect(await closed).toMatchObject({ code: 1001, willReconnect: true });
      const gap = nextOf<GapInfo>("gap after restart", (fn) => c.onGap(fn));
      b = await startBridge({ wsPort: b.wsPort, grpcPort: b.grpcPort });
      await waitUntil("reconnected", () => c.state === "open", 10_000);
      await c.ready();
      expect(await gap).toMatchObject({ channel, epochChanged: true });
      expect(c.reconnects).toBeGreaterThanOrEqual(1);

      const pub2 = new BridgePublisher(b.grpcTarget);
      const e2 = nextOf<BridgeEvent>("event after restart", (fn) => c.onEvent(fn));
      const r2 = await pub2.publish(channel, "agent_message", { content: "after" });
      pub2.close();
      expect(r2.epoch).not.toBe(r1.epoch);
      expect(await e2).toMatchObject({ offset: 1, data: { content: "after" } });
      expect(c.positions()[channel]).toEqual({ epoch: r2.epoch, offset: 1 });
    } finally {
      await b.stop();
    }
  });
});
