// Bundle the example page with esbuild: node examples/web/build.mjs [OUT_DIR]
// (default examples/web/dist). The page's imports resolve from this
// package's node_modules (`npm ci`); this package itself from src/.
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "dist"));
await mkdir(out, { recursive: true });
await build({
  entryPoints: [path.join(here, "app.js")],
  outfile: path.join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  alias: { "@rollout-controller/openfeature-hooks": path.join(here, "..", "..", "src", "index.js") },
  logLevel: "warning",
});
await copyFile(path.join(here, "index.html"), path.join(out, "index.html"));
console.log(out);
