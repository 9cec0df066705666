import { defineConfig } from "vitest/config";

// Every test file starts its own real bridge (BRIDGE_BIN); files run one at a time so that a
// 2-core machine is not oversubscribed and failures read clearly.
export default defineConfig({
  test: {
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      { extends: true, test: { name: "node", include: ["tests/*.test.ts"], environment: "node" } },
      { extends: true, test: { name: "react", include: ["tests/react/*.test.tsx"], environment: "happy-dom" } },
      { extends: true, test: { name: "browser", include: ["tests/browser/*.test.ts"], environment: "node", testTimeout: 90_000 } },
      { extends: true, test: { name: "package", include: ["tests/package/*.test.ts"], environment: "node", testTimeout: 300_000 } },
    ],
  },
});
