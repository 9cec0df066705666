// Starts the real gathering-bridge binary for a test: free ports through --ready_file, logs kept
// for failure messages, and always stopped (SIGTERM, then SIGKILL) in teardown.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface BridgeOptions {
  /** 0 (default) = a free port; pass the previous ports to restart "on the same address". */
  wsPort?: number;
  grpcPort?: number;
  args?: string[];
  readyTimeoutMs?: number;
}

export interface RunningBridge {
  wsPort: number;
  grpcPort: number;
  /** The admin listener's port (with --admin_port), else undefined. */
  adminPort?: number;
  pid: number;
  /** ws://127.0.0.1:<wsPort> */
  wsUrl: string;
  /** 127.0.0.1:<grpcPort> */
  grpcTarget: string;
  /** Last lines the bridge printed (for failure messages). */
  log(): string;
  /** SIGTERM, wait (SIGKILL after `timeoutMs`); resolves with the exit code (null if signalled). */
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

export function bridgeBinary(): string {
  const fromEnv = process.env.BRIDGE_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`BRIDGE_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  const repo = fileURLToPath(new URL("../../../../", import.meta.url));
  for (const dir of ["build/clients", "build/test", "build/release", "build/asan"]) {
    const p = join(repo, dir, "src/app/gathering-bridge");
    if (existsSync(p)) return p;
  }
  throw new Error("set BRIDGE_BIN to the gathering-bridge binary (ctest does; e.g. build/release/src/app/gathering-bridge after `make build`)");
}

function waitExit(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((res) => proc.once("exit", (code) => res(code)));
}

export async function startBridge(opts: BridgeOptions = {}): Promise<RunningBridge> {
  const bin = bridgeBinary();
  const dir = mkdtempSync(join(tmpdir(), "bridge-ts-"));
  const readyFile = join(dir, "ready.json");
  const args = [
    "--host=127.0.0.1",
    `--ws_port=${opts.wsPort ?? 0}`,
    `--grpc_port=${opts.grpcPort ?? 0}`,
    `--ready_file=${readyFile}`,
    ...(opts.args ?? []),
  ];
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  running.add(proc);
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const l of chunk.toString().split("\n")) if (l) lines.push(l);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
    if (process.env.BRIDGE_LOG) process.stderr.write(chunk);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  const exited = waitExit(proc).finally(() => running.delete(proc));
  const log = () => lines.join("\n");

  const timeoutMs = opts.readyTimeoutMs ?? 15_000;
  let ready: { ws_port: number; grpc_port: number; admin_port?: number; pid: number };
  try {
    ready = await new Promise((res, rej) => {
      const check = () => {
        if (!existsSync(readyFile)) return false;
        try {
          const r = JSON.parse(readFileSync(readyFile, "utf8"));
          if (typeof r.ws_port === "number" && typeof r.grpc_port === "number") {
            cleanup();
            res(r);
            return true;
          }
        } catch {
          /* written atomically, but be lenient */
        }
        return false;
      };
      const watcher = watch(dir, () => check());
      const poll = setInterval(check, 50);
      const timer = setTimeout(() => {
        cleanup();
        rej(new Error(`bridge not ready within ${timeoutMs} ms (${bin} ${args.join(" ")})\n${log()}`));
      }, timeoutMs);
      exited.then((code) => {
        cleanup();
        rej(new Error(`bridge exited with ${code ?? proc.signalCode} before it was ready (${bin} ${args.join(" ")})\n${log()}`));
      });
      function cleanup() {
        watcher.close();
        clearInterval(poll);
        clearTimeout(timer);
      }
      check();
    });
  } catch (err) {
    proc.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<number | null> | undefined;
  const stop = (ms = 10_000) => {
    if (!stopped) {
      stopped = (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill("SIGTERM");
          const t = setTimeout(() => proc.kill("SIGKILL"), ms);
          const code = await exited;
          clearTimeout(t);
          rmSync(dir, { recursive: true, force: true });
          return code;
        }
        rmSync(dir, { recursive: true, force: true });
        return proc.exitCode;
      })();
    }
    return stopped;
  };
  return {
    wsPort: ready.ws_port,
    grpcPort: ready.grpc_port,
    adminPort: ready.admin_port,
    pid: proc.pid!,
    wsUrl: `ws://127.0.0.1:${ready.ws_port}`,
    grpcTarget: `127.0.0.1:${ready.grpc_port}`,
    log,
    stop,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One unlabelled value of the bridge's /metrics (its public port). */
export async function metricValue(wsPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${wsPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}
