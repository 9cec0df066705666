// Type-level tests of typed channels: `tsc --noEmit` (part of `npm test`) checks this file, and
// every `@ts-expect-error` line must be an error, or tsc fails ("unused @ts-expect-error").
// Nothing here runs (vitest only picks up *.test.ts); tests/typed.test.ts is the run-time side.
import {
  BridgeClient,
  type AgentEvent,
  type BridgeEvent,
  type ChannelEvent,
  type CircleEvent,
  type NamespaceOf,
  type Subscription,
  type WorkspaceEvent,
} from "../src/index.js";
import { BridgePublisher } from "../src/publisher.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(_: T): void {}

declare const client: BridgeClient;

// Channel names narrow by namespace.
assertType<Equal<NamespaceOf<"circles/dev-team">, "circles">>(true);
assertType<Equal<NamespaceOf<string>, string>>(true);
assertType<Equal<ChannelEvent<"circles/dev-team">, CircleEvent>>(true);
assertType<Equal<ChannelEvent<"workspace/42">, WorkspaceEvent>>(true);
assertType<Equal<ChannelEvent<"agents/7">, AgentEvent>>(true);
assertType<Equal<ChannelEvent<"rooms/a">, BridgeEvent>>(true); // untyped namespace
assertType<Equal<ChannelEvent<string>, BridgeEvent>>(true); // not known statically
assertType<Equal<ChannelEvent<`circles/${string}`>, CircleEvent>>(true);

// subscribe() returns the narrowed subscription.
const circle = client.subscribe("circles/dev-team");
assertType<Equal<typeof circle, Subscription<CircleEvent>>>(true);
const workspace = client.subscribe("workspace/42");
const room = client.subscribe("rooms/a");
assertType<Equal<typeof room, Subscription<BridgeEvent>>>(true);
declare const someChannel: string;
assertType<Equal<ReturnType<typeof client.subscribe<typeof someChannel>>, Subscription<BridgeEvent>>>(true);
assertType<Equal<ReturnType<typeof client.subscription<"workspace/1">>, Subscription<WorkspaceEvent> | undefined>>(true);

// The union of a circle's events: its payload types, plus custom ones.
assertType<Equal<CircleEvent["type"], "agent_message" | "agent_joined" | "agent_left" | "circle_status" | "error" | string>>(true);
assertType<Equal<WorkspaceEvent["type"], "agent_message" | "file_changed" | "file_created" | "file_deleted" | "git_status" | "error">>(true);
assertType<Equal<Extract<WorkspaceEvent, { custom: true }>, never>>(true);

circle.onEvent((e) => {
  if (!e.custom && e.type === "agent_message") {
    const content: string = e.data.content;
    void content;
  }
  if (!e.custom) {
    // @ts-expect-error a circle never carries file_changed
    if (e.type === "file_changed") void e;
  }
});
workspace.onEvent((e) => {
  // No custom events on a workspace: `custom` is always false, `data` always a known payload.
  const known: false = e.custom;
  void known;
  if (e.type === "git_status") {
    const branch: string = e.data.branch;
    void branch;
  }
  // @ts-expect-error a workspace never carries circle_status
  if (e.type === "circle_status") void e;
});

// on(): only the types the channel carries; custom names only where custom is allowed.
circle.on("agent_message", (data, event) => {
  const content: string = data.content;
  assertType<Equal<typeof event.type, "agent_message">>(true);
  void content;
});
circle.on("tool_call", (data) => void data); // custom: allowed on circles
// @ts-expect-error a circle never carries file_changed
circle.on("file_changed", () => undefined);
workspace.on("file_changed", (data) => {
  const path: string = data.path;
  void path;
});
// @ts-expect-error no custom types on a workspace
workspace.on("tool_call", () => undefined);
// @ts-expect-error a workspace never carries circle_status
workspace.on("circle_status", () => undefined);
// An untyped namespace takes every type, known or custom.
room.on("file_changed", (data) => void data.path);
room.on("anything", (data) => void data);

// A handler written for circle events fits a circle subscription but not a workspace one.
const onCircle = (_: CircleEvent) => undefined;
circle.onEvent(onCircle);
room.onEvent((_: BridgeEvent) => undefined);
// @ts-expect-error WorkspaceEvent handlers do not take circle events
circle.onEvent((_: WorkspaceEvent) => undefined);

// BridgePublisher.publish narrows by channel too: a typed namespace takes only what it carries.
declare const publisher: BridgePublisher;
void publisher.publish("circles/dev-team", "agent_message", { agentId: 1, content: "hi" });
void publisher.publish("circles/dev-team", "deploy.done", { env: "prod" }); // custom: allowed on circles
void publisher.publish("workspace/42", "file_changed", { path: "a.ts" });
void publisher.publish(`workspace/${someChannel}`, "git_status", { branch: "main" });
// @ts-expect-error a circle never carries file_changed
void publisher.publish("circles/dev-team", "file_changed", { path: "a.ts" });
// @ts-expect-error a workspace never carries circle_status
void publisher.publish("workspace/42", "circle_status", { status: "idle" });
// @ts-expect-error no custom types on a workspace
void publisher.publish("workspace/42", "deploy.done", { env: "prod" });
// @ts-expect-error the data is the payload's: FileChanged has no `content`
void publisher.publish("workspace/42", "file_changed", { content: "x" });
// Untyped namespaces, and channels or types only known at run time, stay open (the bridge checks).
void publisher.publish("rooms/a", "file_changed", { path: "a.ts" });
void publisher.publish("rooms/a", "anything", { n: 1 });
void publisher.publish(someChannel, "circle_status", { status: "idle" });
declare const someType: string;
void publisher.publish("workspace/42", someType, { n: 1 });
