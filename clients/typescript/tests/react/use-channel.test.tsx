// useChannel in a DOM (happy-dom) with the real bridge: live messages render, the array stays
// bounded, StrictMode's double effects open exactly one socket, unmount closes it.
import { createRequire } from "node:module";
import { StrictMode } from "react";
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { useChannel } from "../../src/react.js";
import { BridgePublisher } from "../../src/publisher.js";
import { startBridge, type RunningBridge } from "../helpers/bridge.js";

// Through Node's require: the DOM environment would otherwise resolve `ws` to its browser stub.
const WS: typeof import("ws").WebSocket = createRequire(import.meta.url)("ws");

// Counts the sockets the hook opens and which of them are still open.
const opened: InstanceType<typeof WS>[] = [];
class CountingWS extends WS {
  constructor(url: string) {
    super(url);
    opened.push(this);
  }
}
const liveSockets = () => opened.filter((s) => s.readyState === WS.CONNECTING || s.readyState === WS.OPEN).length;

let bridge: RunningBridge;
let publisher: BridgePublisher;
beforeAll(async () => {
  bridge = await startBridge();
  publisher = new BridgePublisher(bridge.grpcTarget);
});
afterEach(() => {
  cleanup();
  opened.length = 0;
});
afterAll(async () => {
  publisher?.close();
  await bridge?.stop();
});

function Feed({ url, max }: { url: string; max?: number }) {
  const { messages, lastEvent, isConnected, send } = useChannel({ url, WebSocket: CountingWS, maxMessages: max, reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
  return (
    <div>
      <p data-testid="state">{isConnected ? "connected" : "disconnected"}</p>
      <p data-testid="last">{lastEvent ? `${lastEvent.type}#${lastEvent.offset}` : "none"}</p>
      <button onClick={() => send({ type: "chat", content: "from-hook" })}>send</button>
      <ul>
        {messages.map((m) => (
          <li key={`${m.channel}/${m.offset}`} data-testid="msg">
            {m.type}:{m.type === "agent_message" && !m.custom ? m.data.content : JSON.stringify(m.data)}
          </li>
        ))}
      </ul>
    </div>
  );
}

const items = () => screen.queryAllByTestId("msg").map((li) => li.textContent);
const opts = { timeout: 5000 };

describe("useChannel", () => {
  it("renders live messages, once per event, under StrictMode with one socket", async () => {
    const channel = `circles/hook-${Date.now()}`;
    const view = render(
      <StrictMode>
        <Feed url={`${bridge.wsUrl}/ws/${channel}`} />
      </StrictMode>,
    );
    await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("connected"), opts);
    expect(opened).toHaveLength(1);
    // isConnected means the subscription is acknowledged: nothing published from now is missed.
    await act(async () => {
      await publisher.publish(channel, "agent_message", { agentId: 1, content: "one" });
      await publisher.publish(channel, "agent_message", { agentId: 2, content: "two" });
      await publisher.publish(channel, "deploy.done", { env: "prod" });
    });
    await waitFor(() => expect(items()).toEqual(["agent_message:one", "agent_message:two", 'deploy.done:{"env":"prod"}']), opts);
    expect(screen.getByTestId("last").textContent).toBe("deploy.done#3");

    // Another client on the channel gets what the hook sends.
    const peerGot = new Promise<string>((resolve, reject) => {
      const peer = new WS(`${bridge.wsUrl}/ws/${channel}?ack=1`);
      const t = setTimeout(() => reject(new Error("peer got nothing within 5 s")), 5000);
      peer.on("message", (d) => {
        const f = JSON.parse(String(d));
        if (f.type === "subscribed") act(() => screen.getByText("send").click());
        if (f.type === "chat") {
          clearTimeout(t);
          peer.close();
          resolve(f.content);
        }
      });
    });
    expect(await peerGot).toBe("from-hook");

    view.unmount();
    await waitFor(() => expect(liveSockets()).toBe(0), opts);
    expect(opened).toHaveLength(1);
  });

  it("keeps at most maxMessages and reconnects to a new URL on change", async () => {
    const a = `circles/hook-a-${Date.now()}`;
    const b = `circles/hook-b-${Date.now()}`;
    const view = render(<Feed url={`${bridge.wsUrl}/ws/${a}`} max={2} />);
    await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("connected"), opts);
    await act(async () => {
      for (const content of ["1", "2", "3", "4"]) await publisher.publish(a, "agent_message", { content });
    });
    await waitFor(() => expect(items()).toEqual(["agent_message:3", "agent_message:4"]), opts);

    view.rerender(<Feed url={`${bridge.wsUrl}/ws/${b}`} max={2} />);
    await waitFor(() => expect(items()).toEqual([]), opts);
    await waitFor(() => expect(opened.length === 2 && screen.getByTestId("state").textContent === "connected").toBe(true), opts);
    await waitFor(() => expect(liveSockets()).toBe(1), opts);
    await act(async () => {
      await publisher.publish(b, "agent_message", { content: "on b" });
    });
    await waitFor(() => expect(items()).toEqual(["agent_message:on b"]), opts);
    view.unmount();
    await waitFor(() => expect(liveSockets()).toBe(0), opts);
  });
});
