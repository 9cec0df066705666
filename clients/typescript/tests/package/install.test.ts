// The package installs into another project, as the README shows: `npm pack` (prepack builds ESM
// + .d.ts), then a scratch project outside the repository installs the tarball (React not
// installed: it is an optional peer), type-checks against the shipped declarations, and runs a
// script that subscribes and publishes against the real bridge.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startBridge, type RunningBridge } from "../helpers/bridge.js";

const PKG = fileURLToPath(new URL("../../", import.meta.url));
let bridge: RunningBridge;
let dir = "";

beforeAll(async () => {
  bridge = await startBridge();
  dir = mkdtempSync(join(tmpdir(), "bridge-npm-"));
});
afterAll(async () => {
  await bridge?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 240_000 });

it("npm pack → npm install in a fresh project → import, type-check, run", async () => {
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir], PKG));
  const files: string[] = packed[0].files.map((f: { path: string }) => f.path);
  for (const f of ["dist/index.js", "dist/index.d.ts", "dist/react.js", "dist/publisher.d.ts", "dist/shared-worker.js", "dist/router.js", "package.json"]) expect(files).toContain(f);
  const tgz = join(dir, packed[0].filename);

  const app = join(dir, "app");
  run("mkdir", ["-p", app], dir);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module" }));
  const lock = JSON.parse(run("node", ["-p", "JSON.stringify(require('./package-lock.json').packages)"], PKG));
  const v = (n: string) => lock[`node_modules/${n}`].version;
  // From npm's cache (filled by npm ci) where it can.
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tgz, `ws@${v("ws")}`, `@grpc/grpc-js@${v("@grpc/grpc-js")}`], app);
  expect(readdirSync(join(app, "node_modules"))).not.toContain("react");

  writeFileSync(join(app, "check.ts"), `
import { BridgeClient, type BridgeEvent, type Subscription } from "@gathering/bridge-client";
import { BridgePublisher, type PublishResult } from "@gathering/bridge-client/publisher";
declare const WS: any;
const c = new BridgeClient({ url: "ws://127.0.0.1:1/ws/circles/x", WebSocket: WS, getToken: async () => "t" });
const sub: Subscription = c.subscribe("circles/y", { since: 0 });
sub.on("agent_message", (m) => { const s: string = m.content; void s; });
c.onEvent((e: BridgeEvent) => void e.offset);
async function pub(p: BridgePublisher): Promise<number> { const r: PublishResult = await p.publish("circles/x", "agent_message", { content: "x" }); return r.offsetNumber; }
void pub;
`);
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify({ compilerOptions: { strict: true, module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", noEmit: true, skipLibCheck: true, types: [] }, files: ["check.ts"] }));
  run(join(PKG, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], app);

  writeFileSync(join(app, "app.mjs"), `
import WebSocket from "ws";
import { BridgeClient } from "@gathering/bridge-client";
import { BridgePublisher } from "@gathering/bridge-client/publisher";
// The worker script's export resolves (and, outside a SharedWorker, starts nothing).
import { serveTabs } from "@gathering/bridge-client/shared-worker";
if (typeof serveTabs !== "function") throw new Error("no serveTabs in @gathering/bridge-client/shared-worker");
const channel = "circles/npm-" + process.pid;
const c = new BridgeClient({ url: ${JSON.stringify(bridge.wsUrl)} + "/ws/" + channel, WebSocket });
const got = new Promise((resolve) => c.on("agent_message", (m, e) => resolve({ content: m.content, offset: e.offset })));
await c.connect();
const pub = new BridgePublisher(${JSON.stringify(bridge.grpcTarget)});
const r = await pub.publish(channel, "agent_message", { agentId: 7, content: "from the tarball" });
console.log(JSON.stringify({ got: await got, published: r }));
pub.close();
c.close();
`);
  const out = JSON.parse(run("node", ["app.mjs"], app).trim().split("\n").pop()!);
  expect(out.got).toEqual({ content: "from the tarball", offset: 1 });
  expect(out.published).toMatchObject({ offset: "1" });
}, 300_000);
