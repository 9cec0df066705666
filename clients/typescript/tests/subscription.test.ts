// Subscriptions as objects against the real bridge: state, the promise settling on the bridge's
// `subscribed` or on the error refusing that channel (matched among several in flight), typed
// events per channel, recovered/gap notifications, unsubscribe, publish() confirmed or refused.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BridgeClient, BridgeError, type BridgeClientOptions, type BridgeEvent, type GapInfo, type StateChange, type SubscriptionState } from "../src/index.js";
import { BridgePublisher } from "../src/publisher.js";
import { testAuth, type TestAuth } from "./helpers/auth.js";
import { startBridge, type RunningBridge } from "./helpers/bridge.js";
import { nextOf, waitUntil } from "./helpers/wait.js";

let auth: TestAuth;
let bridge: RunningBridge; // auth on: grants decide what is refused
let publisher: BridgePublisher;
const clients: BridgeClient[] = [];
let seq = 0;
const unique = (ns: string) => `${ns}/s${process.pid}-${Date.now()}-${++seq}`;

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

describe("Subscription", () => {
  it("settles each promise on its own answer: subscribed, forbidden, invalid_channel", async () => {
    const ok1 = unique("circles");
    const ok2 = unique("circles");
    const denied = unique("workspace");
    const sent: any[] = [];
    class Recording extends WebSocket {
      send(data: any, ...rest: any[]) {
        sent.push(JSON.parse(String(data)));
        return (super.send as any)(data, ...rest);
      }
    }
    const c = client({ WebSocket: Recording as any, channels: [ok1], token: auth.token("ann", { channels: "circles/*", publish: ok1 }) });
    const errors: BridgeError[] = [];
    c.onError((e) => errors.push(e));
    await c.connect();
    const a = c.subscription(ok1)!;
    expect(a.state).toBe("subscribed");

    // Three in flight at once; the bridge answers in order, only `subscribed` names its channel.
    const states: SubscriptionState[] = [];
    const b = c.subscribe(denied);
    const bad = c.subscribe("nowhere/x");
    const d = c.subscribe(ok2);
    d.onState((s) => states.push(s));
    expect([b.state, bad.state, d.state]).toEqual(["subscribing", "subscribing", "subscribing"]);
    const [rb, rbad, rd] = await Promise.allSettled([b.ready, bad.ready, d.ready]);
    expect(rb).toMatchObject({ status: "rejected", reason: { code: "forbidden", channel: denied, request: "subscribe" } });
    expect(rbad).toMatchObject({ status: "rejected", reason: { code: "invalid_channel", channel: "nowhere/x" } });
    expect(rd).toMatchObject({ status: "fulfilled", value: { type: "subscribed", channel: ok2, offset: 0 } });
    expect([b.state, bad.state, d.state]).toEqual(["unsubscribed", "unsubscribed", "subscribed"]);
    expect(b.error?.message).toMatch(/does not grant/);
    expect(states).toEqual(["subscribed"]);
    expect(c.channelNames.sort()).toEqual([ok1, ok2].sort());
    expect(errors.map((e) => [e.code, e.channel])).toEqual([["forbidden", denied], ["invalid_channel", "nowhere/x"]]);
    expect(c.isSubscribed).toBe(true);
    // Control frames carry ids, for bridges that echo them.
    expect(sent.filter((f) => f.type === "subscribe").every((f) => typeof f.id === "string")).toBe(true);

    // Typed events per subscription.
    const got: string[] = [];
    a.on("agent_message", (m, e) => got.push(`${e.channel === ok1 ? "a" : "?"}:${m.content}`));
    d.on("agent_message", (m, e) => got.push(`${e.channel === ok2 ? "d" : "?"}:${m.content}`));
    await publisher.publish(ok2, "agent_message", { content: "two" });
    await publisher.publish(ok1, "agent_message", { content: "one" });
    await waitUntil("both events", () => got.length === 2);
    expect(got).toEqual(["d:two", "a:one"]);

    // publish(): confirmed by the bridge's ack (with the offset), or refused by the grants.
    await expect(a.publish({ type: "chat", content: "hi" })).resolves.toMatchObject({ channel: ok1, confirmedBy: "ack", offset: expect.any(Number) });
    const refused = d.publish({ type: "chat", content: "no grant" });
    await expect(refused).rejects.toMatchObject({ code: "forbidden", channel: ok2, request: "message" });
    await expect(a.publish({ type: "gap" })).rejects.toMatchObject({ code: "reserved_type" });

    // unsubscribe() resolves on the bridge's `unsubscribed`.
    await d.unsubscribe();
    expect(d.state).toBe("unsubscribed");
    expect(c.channelNames).toEqual([ok1]);
  });

  it("reads history and presence over the socket, refusals rejected", async () => {
    const ch = unique("circles");
    const c = client({ channels: [ch], token: auth.token("hist", { channels: "circles/*" }) });
    await c.connect();
    for (let i = 1; i <= 3; i++) {
      await publisher.publish(ch, "agent_message", { agentId: i, content: `m${i}` });
    }
    const sub = c.subscription(ch)!;
    // Offset 1 is hist's own agent_joined (circles keep presence), then the three messages.
    const h = await sub.history({ since: 2 });
    expect(h).toMatchObject({ type: "history", channel: ch, offset: 4, complete: true });
    expect(h.messages.map((m) => m.offset)).toEqual([3, 4]);
    const one = await c.history(ch, { limit: 1 });
    expect(one.messages.length).toBe(1);
    expect(one.complete).toBe(false);
    const p = await sub.presence();
    expect(p).toMatchObject({ type: "presence", channel: ch, connection_count: 1 });
    expect(p.members.map((m) => m.identity)).toEqual(["hist"]);
    await expect(c.history(unique("workspace"))).rejects.toMatchObject({ code: "forbidden", request: "history" });
    await expect(c.presence("nowhere/x")).rejects.toMatchObject({ code: "invalid_channel" });
  });

  it("tells recovered and gap per subscription across a reconnect", async () => {
    const small = await startBridge({ args: ["--namespaces=circles:broadcast:history=3:ttl=300,workspace:history=100:ttl=300,agents:history=50:ttl=120"] });
    const pub = new BridgePublisher(small.grpcTarget);
    try {
      const full = unique("circles");
      const lossy = unique("circles");
      // While `down`, connections go to a closed port.
      let down = false;
      class CuttableWS extends WebSocket {
        constructor(url: string) {
          super(down ? url.replace(/:\d+\//, ":1/") : url);
        }
      }
      const c = new BridgeClient({ url: small.wsUrl, WebSocket: CuttableWS as any, channels: [full, lossy], reconnect: { minDelayMs: 20, maxDelayMs: 100 } });
      clients.push(c);
      await c.connect();
      const f = c.subscription(full)!;
      const l = c.subscription(lossy)!;
      await pub.publish(full, "agent_message", { content: "f1" });
      await pub.publish(lossy, "agent_message", { content: "l1" });
      await waitUntil("first events", () => f.position?.offset === 1 && l.position?.offset === 1);

      const recovered = nextOf("full recovered", (fn) => f.onRecovered(fn));
      const gap = nextOf<GapInfo>("lossy gap", (fn) => l.onGap(fn));
      const fGaps: GapInfo[] = [];
      f.onGap((g) => fGaps.push(g));
      const states: SubscriptionState[] = [];
      f.onState((s) => states.push(s));
      // Drop the socket and publish while it is down: 1 more on `full`, 5 more on `lossy`
      // (history 3: offsets 2 and 3 are gone).
      const cut = nextOf<StateChange>("reconnecting", (fn) => c.onState(fn), (s) => s.state === "reconnecting");
      down = true;
      (c as any).ws.terminate();
      await cut;
      await pub.publish(full, "agent_message", { content: "f2" });
      for (let i = 2; i <= 6; i++) await pub.publish(lossy, "agent_message", { content: `l${i}` });
      const lossyEvents: BridgeEvent[] = [];
      down = false;
      l.onEvent((e) => lossyEvents.push(e));
      expect(await recovered).toMatchObject({ channel: full, recovered: true });
      expect(await gap).toEqual({ channel: lossy, from: 2, to: 3, epochChanged: false });
      await waitUntil("lossy events 4..6", () => lossyEvents.length === 3);
      expect(lossyEvents.map((e) => e.offset)).toEqual([4, 5, 6]);
      expect(fGaps).toEqual([]);
      expect(states).toEqual(["subscribing", "subscribed"]);
      expect(f.position).toMatchObject({ offset: 2 });
    } finally {
      pub.close();
      await small.stop();
    }
  });

  it("subscribe({since}) replays what followed", async () => {
    const channel = unique("circles");
    let epoch = "";
    for (let i = 1; i <= 3; i++) epoch = (await publisher.publish(channel, "agent_message", { content: `m${i}` })).epoch;
    const c = client({ channels: [], multiplex: true, token: auth.token("fay") });
    await c.connect();
    const sub = c.subscribe(channel, { since: 1, epoch });
    const seen: number[] = [];
    sub.on("agent_message", (_m, e) => seen.push(e.offset)); // (fay's own agent_joined follows)
    expect(await sub.ready).toMatchObject({ channel, offset: 3, recovered: true });
    await waitUntil("replayed 2..3", () => seen.length === 2);
    expect(seen).toEqual([2, 3]);
  });
});
