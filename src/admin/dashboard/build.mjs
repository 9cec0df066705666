// Builds the dashboard into one self-contained HTML file (script and styles inline), the file the
// bridge embeds. `node build.mjs OUT` writes it; `node build.mjs --check OUT` fails when OUT is
// not what a fresh build gives (the ctest admin_dashboard_bundle_in_sync).
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const check = args[0] === "--check";
const out = args[check ? 1 : 0];
if (!out) {
  console.error("usage: node build.mjs [--check] OUT.html");
  process.exit(2);
}
const uplot = JSON.parse(readFileSync(join(here, "node_modules/uplot/package.json"), "utf8"));
const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outdir: "out",
  write: false,
  logLevel: "warning",
  banner: { js: `/* uPlot ${uplot.version}: MIT License, Copyright (c) Leon Sorokin, https://github.com/leeoniya/uPlot */` },
});
const of = (ext) => new TextDecoder().decode(result.outputFiles.find((f) => f.path.endsWith(ext)).contents).trim();
// Nothing in the script may end its <script> element early.
const js = of(".js").replace(/<\/(script)/gi, "<\\/$1");
const css = of(".css").replace(/<\/(style)/gi, "<\\/$1");
const html = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("/*CSS*/", () => css)
  .replace("/*JS*/", () => js);
const target = join(here, out);
if (check) {
  let committed = "";
  try {
    committed = readFileSync(target, "utf8");
  } catch {
    /* missing: reported below */
  }
  if (committed !== html) {
    console.error(`${out} is not what src/ builds: run \`npm ci && npm run build\` in src/admin/dashboard and commit it`);
    process.exit(1);
  }
  console.log(`${out} matches a fresh build (${html.length} bytes)`);
} else {
  writeFileSync(target, html);
  console.log(`wrote ${out} (${html.length} bytes)`);
}
