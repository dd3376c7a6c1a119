// Renames the wasm's imports and exports in wasm-bindgen's JS glue to the short names
// wasm-opt's `--minify-imports-and-exports-and-modules` gave them (see build.sh): the
// long mangled names otherwise take 12 KB of the wasm (2.5 KB gzipped).
//
// Usage: node minify-names.mjs <names.json> <glue.js> <wasm>
// names.json is what that pass prints: {"imports": [[module, name, new]], "exports":
// [[name, new]]}; <wasm> is its output. The glue is rewritten in place, and only when
// every import of the wasm then has its function in the glue.
import { readFileSync, writeFileSync } from "node:fs";

const [namesPath, gluePath, wasmPath] = process.argv.slice(2);
const names = JSON.parse(readFileSync(namesPath, "utf8"));
let glue = readFileSync(gluePath, "utf8");
const wasm = new WebAssembly.Module(readFileSync(wasmPath));

const fail = (message) => {
  console.error(`minify-names: ${message}`);
  process.exit(1);
};

// Imports: the keys of the import object, one a line (`        name: function(…) {`).
const imports = new Map(names.imports.map(([, name, short]) => [name, short]));
glue = glue.replace(/^(\s+)([\w$]+)(?=: function\()/gm, (line, indent, name) =>
  imports.has(name) ? `${indent}${JSON.stringify(imports.get(name))}` : line,
);
// The one module they came from, now renamed, is that object's key.
const modules = new Set(names.imports.map(([module]) => module));
const renamed = new Set(WebAssembly.Module.imports(wasm).map((i) => i.module));
if (modules.size !== 1 || renamed.size !== 1) fail("expected imports from one module");
const [from] = modules;
const [to] = renamed;
const key = `${JSON.stringify(from)}: import0`;
if (!glue.includes(key)) fail(`no import object for ${from} in ${gluePath}`);
glue = glue.replace(key, `${JSON.stringify(to)}: import0`);

// Exports: read as `wasm.name`.
const exports = new Map(names.exports);
const property = (name) =>
  /^[A-Za-z_$][\w$]*$/.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`;
glue = glue.replace(/\bwasm\.([A-Za-z_$][\w$]*)/g, (read, name) =>
  exports.has(name) ? `wasm${property(exports.get(name))}` : read,
);

// Every import must now be a key of the import object.
for (const { name } of WebAssembly.Module.imports(wasm)) {
  if (!glue.includes(`${JSON.stringify(name)}: function(`)) {
    fail(`the glue has no import ${name}`);
  }
}
writeFileSync(gluePath, glue);
