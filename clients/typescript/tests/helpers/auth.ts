// Auth for tests: an HS256 secret + API keys file for `--auth=token`, and tokens minted here
// (HMAC-SHA256 over base64url(header).base64url(claims), as docs/security.md specifies).
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

export interface TestAuth {
  secret: string;
  apiKey: string;
  /** Bridge flags: --auth=token with this secret and key, no leeway. */
  args: string[];
  /** A token for `sub`, valid `ttlSec` seconds from now (exp rounded down to a whole second). */
  token(sub: string, claims?: { channels?: string | string[]; publish?: string | string[]; ttlSec?: number; secret?: string }): string;
  cleanup(): void;
}

export function testAuth(): TestAuth {
  const dir = mkdtempSync(join(tmpdir(), "bridge-auth-"));
  const secret = randomBytes(32).toString("hex");
  const apiKey = `k-${randomBytes(16).toString("hex")}`;
  writeFileSync(join(dir, "secret.txt"), secret);
  writeFileSync(join(dir, "keys.txt"), `${apiKey} backend *\n`);
  return {
    secret,
    apiKey,
    args: ["--auth=token", `--auth_hs256_secret_file=${join(dir, "secret.txt")}`, `--api_keys_file=${join(dir, "keys.txt")}`, "--auth_leeway=0s"],
    token(sub, c = {}) {
      const exp = Math.floor(Date.now() / 1000) + (c.ttlSec ?? 3600);
      const claims = { sub, exp, channels: c.channels ?? "*", publish: c.publish ?? "*" };
      const head = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
      return `${head}.${b64url(createHmac("sha256", c.secret ?? secret).update(head).digest())}`;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
