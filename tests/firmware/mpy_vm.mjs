// Runs MicroPython's WebAssembly port (the real VM) for tests/firmware/mpy_vm.py.
// Usage: node mpy_vm.mjs PATH/TO/micropython.mjs
// Requests on stdin, one JSON object a line; one JSON answer a line on stdout:
//   {"op": "files", "files": {"/lib/x.py": "source", ...}}  -> {"ok": true}
//   {"op": "exec", "code": "..."}  -> {"ok": true, "result": <global _vm_result>, "output": "..."}
//                                  or {"ok": false, "error": "...", "output": "..."}
// What the Python code prints is collected into "output", never written to stdout.
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const { loadMicroPython } = await import(pathToFileURL(process.argv[2]).href);
let printed = [];
const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => printed.push(line),
  stderr: (line) => printed.push(line),
});

function mkdirs(path) {
  const parts = path.split("/").slice(1, -1);
  let dir = "";
  for (const p of parts) {
    dir += "/" + p;
    try { mp.FS.mkdir(dir); } catch (e) { /* exists */ }
  }
}

const answer = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const req = JSON.parse(line);
  printed = [];
  if (req.op === "files") {
    for (const [path, text] of Object.entries(req.files)) {
      mkdirs(path);
      mp.FS.writeFile(path, text);
    }
    answer({ ok: true });
  } else if (req.op === "exec") {
    try {
      mp.runPython(req.code);
      answer({ ok: true, result: mp.globals.get("_vm_result"), output: printed.join("\n") });
    } catch (e) {
      answer({ ok: false, error: String(e.message || e), output: printed.join("\n") });
    }
  } else {
    answer({ ok: false, error: "unknown op " + req.op });
  }
}
