// Starts a real redis-server on a free loopback port (no persistence, a temporary directory), as
// tests/broker/redis_server.cc does for the C++ tests, for bridges sharing one broker.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RunningRedis {
  port: number;
  /** redis://127.0.0.1:<port>, the bridge's --broker. */
  url: string;
  log(): string;
  /** SIGTERM and wait (SIGKILL after 10 s); removes its directory. */
  stop(): Promise<void>;
}

/** Whether redis-server is on PATH (tests that need it are skipped otherwise). */
export function haveRedis(): boolean {
  return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function waitExit(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((res) => proc.once("exit", () => res()));
}

export async function startRedis(readyTimeoutMs = 10_000): Promise<RunningRedis> {
  const dir = mkdtempSync(join(tmpdir(), "bridge-ts-redis-"));
  const lines: string[] = [];
  // Redis cannot bind port 0: probe a free port, and try another when something took it first.
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"];
    const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    const exited = waitExit(proc);
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), readyTimeoutMs);
      const keep = (chunk: Buffer) => {
        for (const l of chunk.toString().split("\n")) if (l) lines.push(l);
        if (lines.length > 100) lines.splice(0, lines.length - 100);
        if (/Ready to accept connections/.test(chunk.toString())) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      proc.stdout!.on("data", keep);
      proc.stderr!.on("data", keep);
      exited.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    const log = () => lines.join("\n");
    if (ready) {
      let stopped: Promise<void> | undefined;
      return {
        port,
        url: `redis://127.0.0.1:${port}`,
        log,
        stop: () =>
          (stopped ??= (async () => {
            proc.kill("SIGTERM");
            const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
            await exited;
            clearTimeout(t);
            rmSync(dir, { recursive: true, force: true });
          })()),
      };
    }
    proc.kill("SIGKILL");
    await exited;
    if (!/in use/.test(log())) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start (redis-server ${args.join(" ")})\n${log()}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`redis-server found no free port\n${lines.join("\n")}`);
}
