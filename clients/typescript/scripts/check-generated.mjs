// Regenerates src/gen from ../../proto into a temporary directory and fails when it differs from
// the committed src/gen, so the proto contract and this client never drift apart: the messages
// (protoc-gen-es) and the typed channels (scripts/generate-channels.mjs).
// Usage: npm run check-generated   (exit 0: in sync, 1: drift, 2: protoc/plugin missing)
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { generateChannels } from "./generate-channels.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const committed = join(root, "src", "gen");
const plugin = join(root, "node_modules", ".bin", "protoc-gen-es");
const tmp = mkdtempSync(join(tmpdir(), "bridge-gen-"));

function list(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

try {
  try {
    execFileSync("protoc", [
      "-I", join(root, "..", "..", "proto"),
      `--plugin=protoc-gen-es=${plugin}`,
      `--es_out=${tmp}`,
      "--es_opt=target=ts,json_types=true,import_extension=js",
      "gathering/bridge/v1/events.proto",
      "gathering/bridge/v1/options.proto",
    ], { stdio: ["ignore", "inherit", "inherit"] });
    generateChannels(tmp);
  } catch (e) {
    console.error(`check-generated: protoc failed (${e.message}); is protobuf-compiler installed and npm ci done?`);
    process.exit(2);
  }
  const fresh = list(tmp);
  const have = list(committed);
  let drift = false;
  for (const f of new Set([...fresh, ...have])) {
    if (!fresh.includes(f)) { console.error(`stale file in src/gen (no longer generated): ${f}`); drift = true; continue; }
    if (!have.includes(f)) { console.error(`missing from src/gen (run npm run generate): ${f}`); drift = true; continue; }
    if (readFileSync(join(tmp, f), "utf8") !== readFileSync(join(committed, f), "utf8")) {
      drift = true;
      console.error(`src/gen/${f} differs from what the proto generates:`);
      spawnSync("diff", ["-u", join(committed, f), join(tmp, f)], { stdio: "inherit" });
    }
  }
  if (drift) {
    console.error("check-generated: src/gen is out of date; run `npm run generate` and commit it.");
    process.exit(1);
  }
  console.log(`check-generated: src/gen matches proto (${fresh.length} file(s)).`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
