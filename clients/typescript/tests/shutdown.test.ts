// A bridge shutting down (SIGTERM): the client takes the resume positions of its `reconnect`
// frame and, on another bridge sharing the same real redis-server, resumes from exactly them:
// nothing lost, nothing twice, not even its own message (which the first bridge never echoed).
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BridgeClient, type BridgeEvent, type CloseInfo, type GapInfo, type GoingAwayInfo, type SubscribedFrame } from "../src/index.js";
import { BridgePublisher } from "../src/publisher.js";
import { startBridge, type RunningBridge } from "./helpers/bridge.js";
import { haveRedis, startRedis, type RunningRedis } from "./helpers/redis.js";
import { collect, nextOf, waitUntil } from "./helpers/wait.js";

let redis: RunningRedis | undefined;
const bridges: RunningBridge[] = [];
const closers: Array<{ close(): void }> = [];

afterEach(async () => {
  for (const c of closers.splice(0)) c.close();
  for (const b of bridges.splice(0)) await b.stop();
  await redis?.stop();
  redis = undefined;
});

describe.skipIf(!haveRedis())("bridge shutdown", () => {
  it("resumes on another bridge of the same broker from the reconnect frame's positions", async () => {
    redis = await startRedis();
    const b1 = await startBridge({ args: [`--broker=${redis.url}`] });
    bridges.push(b1);
    const b2 = await startBridge({ args: [`--broker=${redis.url}`] });
    bridges.push(b2);
    const channel = `circles/t${process.pid}-${Date.now()}-shutdown`;
    // A load balancer in front of the two: the client's sockets go to `target`.
    let target = b1.wsUrl;
    class Routed extends WebSocket {
      constructor(url: string) {
        super(url.replace(/^ws:\/\/[^/]+/, target));
      }
    }
    const c = new BridgeClient({ url: `ws://bridge.test/ws/${channel}`, WebSocket: Routed as any, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
    closers.push(c);
    const all: BridgeEvent[] = [];
    const gaps: GapInfo[] = [];
    c.onEvent((e) => all.push(e));
    c.onGap((g) => gaps.push(g));
    await c.connect();
    const pub = new BridgePublisher(b2.grpcTarget);
    closers.push(pub);

    const first = collect<BridgeEvent>("three events", (fn) => c.onEvent(fn), 3, 10_000);
    const { epoch } = await pub.publish(channel, "agent_message", { content: "m1" });
    for (const m of ["m2", "m3"]) await pub.publish(channel, "agent_message", { content: m });
    expect((await first.done).map((e) => e.offset)).toEqual([1, 2, 3]);
    // Its own message takes offset 4 and is not echoed to it: only the bridge's position counts it.
    expect(await c.publish({ type: "message", content: "mine" })).toMatchObject({ offset: 4, confirmedBy: "ack" });
    expect(c.positions()[channel]).toEqual({ epoch, offset: 3 });

    const away = nextOf<GoingAwayInfo>("the reconnect frame", (fn) => c.onGoingAway(fn), undefined, 10_000);
    const closed = nextOf<CloseInfo>("close 1001", (fn) => c.onClose(fn), undefined, 10_000);
    expect(await b1.stop(), b1.log()).toBe(0);
    expect(await away).toEqual({ reason: "server shutting down", positions: { [channel]: { epoch, offset: 4 } } });
    expect(await closed).toMatchObject({ code: 1001, willReconnect: true });
    expect(c.positions()[channel]).toEqual({ epoch, offset: 4 });

    // Published while the client is away (retrying b1's closed port); then it moves to b2.
    for (const m of ["m5", "m6", "m7"]) expect((await pub.publish(channel, "agent_message", { content: m })).epoch).toBe(epoch);
    const resubscribed = nextOf<SubscribedFrame>("the resubscription", (fn) => c.onSubscribed(fn), undefined, 10_000);
    const moved = collect<BridgeEvent>("three events on b2", (fn) => c.onEvent(fn), 3, 10_000);
    target = b2.wsUrl;
    expect(await resubscribed).toMatchObject({ channel, epoch, recovered: true });
    expect((await moved.done).map((e) => [e.offset, (e.data as { content?: string }).content])).toEqual([
      [5, "m5"],
      [6, "m6"],
      [7, "m7"],
    ]);
    // A round trip through b2: anything replayed twice would have arrived before the pong.
    await waitUntil("open", () => c.state === "open");
    await c.ping();
    expect(all.map((e) => e.offset)).toEqual([1, 2, 3, 5, 6, 7]);
    expect(gaps).toEqual([]);
    expect(c.positions()[channel]).toEqual({ epoch, offset: 7 });
  });
});
