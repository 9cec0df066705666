// A bridge with a broker acks a client message once Redis has taken it, after the `pong` to the
// `ping` that `publish()` sends behind it: each publish still resolves on its own ack, with the
// offset it took, never on the earlier pong.
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BridgeClient, type PublishAck } from "../src/index.js";
import { startBridge, type RunningBridge } from "./helpers/bridge.js";
import { haveRedis, startRedis, type RunningRedis } from "./helpers/redis.js";

let redis: RunningRedis | undefined;
let bridge: RunningBridge | undefined;
let client: BridgeClient | undefined;

afterEach(async () => {
  client?.close();
  client = undefined;
  await bridge?.stop();
  bridge = undefined;
  await redis?.stop();
  redis = undefined;
});

describe.skipIf(!haveRedis())("a bridge with a broker", () => {
  it("answers each publish with its own ack and offset, though the pong behind it comes first", async () => {
    redis = await startRedis();
    bridge = await startBridge({ args: [`--broker=${redis.url}`] });
    const channel = `circles/t${process.pid}-${Date.now()}-acks`;
    client = new BridgeClient({ url: `${bridge.wsUrl}/ws/${channel}`, WebSocket: WebSocket as any, reconnect: false });
    await client.connect();
    const acks: PublishAck[] = await Promise.all(Array.from({ length: 20 }, (_, i) => client!.publish({ type: "message", content: `m${i}` })));
    expect(acks.map((a) => a.confirmedBy)).toEqual(Array(20).fill("ack"));
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });
});

describe("a message the bridge refuses silently", () => {
  it("rejects `timeout` when the bridge echoes ids and never answers it (second refusal of a burst)", async () => {
    // Three tokens, no refill to speak of: the 4th message gets the burst's one rate_limited error
    // frame, the 5th is refused with no frame at all; its pong still comes.
    bridge = await startBridge({ args: ["--client_message_rate=0.01", "--client_message_burst=3"] });
    const channel = `circles/t${process.pid}-${Date.now()}-silent`;
    client = new BridgeClient({ url: `${bridge.wsUrl}/ws/${channel}`, WebSocket: WebSocket as any, reconnect: false, publishTimeoutMs: 300 });
    await client.connect();
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => client!.publish({ type: "message", content: `m${i}` })));
    expect(results.slice(0, 3).map((r) => r.status === "fulfilled" && r.value.confirmedBy)).toEqual(["ack", "ack", "ack"]);
    expect(results.slice(3).map((r) => r.status === "rejected" && (r.reason as { code?: string }).code)).toEqual(["rate_limited", "timeout"]);
  });
});
