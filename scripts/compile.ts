/**
 * Compiles one entry point into a standalone executable under dist/bin/ at the repo root:
 * `bun scripts/compile.ts <entry.ts> <name>`. Minified, bytecode-cached, and with no .env
 * or bunfig.toml autoloading (a plugin must not change behaviour with its working dir).
 */
import { mkdirSync } from "node:fs"
import { join, resolve } from "node:path"

const [entry, name] = process.argv.slice(2)
if (!entry || !name) {
  console.error("usage: bun scripts/compile.ts <entry.ts> <name>")
  process.exit(2)
}
const outDir = resolve(import.meta.dir, "..", "dist", "bin")
mkdirSync(outDir, { recursive: true })
const outfile = join(outDir, name)
// Which build this is: the resident daemon serves only callers of its own build
// (packages/resident/src/protocol.ts). Unique per compile, which is all it needs to be.
const buildId = `${new Date().toISOString()}-${crypto.randomUUID().slice(0, 8)}`
const build = Bun.spawnSync([
  process.execPath,
  "build",
  resolve(entry),
  "--compile",
  "--minify",
  "--bytecode",
  // CommonJS (the bytecode default) cannot hold the lazy import() that keeps VERSION fast
  "--format=esm",
  // the lazy import() becomes its own chunk: VERSION parses only the few hundred bytes it
  // needs (measured in docs/bench/build-options.md: VERSION 13.5 → 10.3 ms, ADD 32.7 → 27.8 ms)
  "--splitting",
  `--define=TSCNI_BUILD_ID=${JSON.stringify(buildId)}`,
  "--no-compile-autoload-dotenv",
  "--no-compile-autoload-bunfig",
  "--outfile",
  outfile
], { stdout: "inherit", stderr: "pipe" })
const stderr = build.stderr.toString()
process.stderr.write(stderr)
// `bun build` reports a failed bytecode step on stderr but still exits 0.
process.exit(build.exitCode === 0 && !/^error:/m.test(stderr) ? 0 : 1)
