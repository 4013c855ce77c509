// Entry point of a Node run: `node main.mjs ENV_DIR SOURCE_DIR` (started by the runner's
// backends through `runtime_command`, which sets up the protocol's channels; see protocol.mjs).
//
// Speaks the protocol of ../protocol.json with the runner, as the Python runtime does: says
// `hello`; on `prepare` applies the crew's environment variables to its own environment, makes
// TypeScript importable (tsx, from ENV_DIR/runtime) and imports the crew's module (`ready`); on
// `start` invokes the graph with the run's input and reports `result` or `error`. The crew's
// environment reaches the runtime only through `prepare`: no process on the host ever has it.
//
// ENV_DIR holds what the build installed (`node_modules` — the crew's dependencies — and
// `runtime/node_modules` — tsx); SOURCE_DIR is the crew's folder, whose ancestors hold a
// `node_modules` that is (or links to) ENV_DIR's, so the crew's imports resolve as they do for
// its author. Exit codes: 0 result sent, 1 crew error sent, 2 the protocol was broken.

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

import * as langgraph from "./langgraph.mjs";
import * as protocol from "./protocol.mjs";

const FRAMEWORKS = new Set(["langgraph-js"]);
const JS_FILE = /\.(ts|mts|cts|tsx|js|mjs|cjs|jsx)$/;

class RunError extends Error {
  get name() {
    return this.constructor.name;
  }
}
class EntrypointError extends RunError {}
class MissingDependency extends RunError {}

let flushStdout = () => {};

function report(err) {
  flushStdout();
  const name = err?.name ?? err?.constructor?.name ?? "Error";
  const text = err instanceof Error ? err.message : String(err);
  const message = `${name}: ${text}`.trim().replace(/:$/, "");
  const traceback = typeof err?.stack === "string" ? err.stack : undefined;
  protocol.send({ t: "error", error_type: name, message, traceback });
}

// `prepare.linger`: the runner ends our input once it has read our last line, so that nothing it
// writes meets our end (a container engine reports such a write on the run's output).
let linger = false;
const LINGER_MS = 5000;

let exiting = false;

function exit(code) {
  flushStdout();
  if (!linger) process.exit(code);
  if (exiting) return; // the first end stands, whatever the crew's leftovers throw meanwhile
  exiting = true;
  protocol.inputEnded(LINGER_MS).then(() => process.exit(code));
}

function stringMap(value, what) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new protocol.ProtocolError(`${what} must be an object of strings`);
  }
  for (const v of Object.values(value)) {
    if (typeof v !== "string") throw new protocol.ProtocolError(`${what} must be an object of strings`);
  }
  return value;
}

/** `./src/graph.ts:graph` → the file (inside the crew's folder) and the export's name. */
export function parseEntrypoint(entrypoint, sourceDir) {
  const at = entrypoint.lastIndexOf(":");
  const file = at > 0 ? entrypoint.slice(0, at) : "";
  const name = at > 0 ? entrypoint.slice(at + 1) : "";
  if (!file || !name || !JS_FILE.test(file)) {
    throw new EntrypointError(`entrypoint '${entrypoint}' must look like './src/graph.ts:graph'`);
  }
  const root = path.resolve(sourceDir);
  const target = path.resolve(root, file);
  if (target !== root && !target.startsWith(root + path.sep)) {
    throw new EntrypointError(`entrypoint '${entrypoint}' points outside the crew's folder`);
  }
  return { file: target, relative: file, name };
}

async function registerTypeScript(envDir) {
  // tsx's own entry point for `node --import tsx`: it registers its ESM and CommonJS hooks.
  const runtimeDir = path.join(envDir, "runtime");
  try {
    const manifest = createRequire(path.join(runtimeDir, "package.json")).resolve("tsx/package.json");
    const loader = JSON.parse(fs.readFileSync(manifest, "utf8")).exports["."];
    await import(pathToFileURL(path.join(path.dirname(manifest), loader)).href);
  } catch (err) {
    throw new RunError(
      `the crew's environment has no TypeScript support (tsx in ${runtimeDir}): ${err.message};` +
        " deploy the crew again to rebuild it",
    );
  }
}

function explainImport(err, relative) {
  const text = String(err?.message ?? err);
  const missing = /Cannot find (?:package|module) '([^']+)'/.exec(text);
  if ((err?.code === "ERR_MODULE_NOT_FOUND" || err?.code === "MODULE_NOT_FOUND") && missing) {
    const name = missing[1];
    if (!name.startsWith(".") && !name.startsWith("/") && !name.startsWith("file:")) {
      const pkg = name.startsWith("@") ? name.split("/").slice(0, 2).join("/") : name.split("/")[0];
      const error = new MissingDependency(
        `package '${pkg}' is not installed (imported by '${relative}'); add it to package.json`,
      );
      error.stack = `${error.name}: ${error.message}\n${err.stack ?? ""}`;
      return error;
    }
  }
  return err;
}

async function load(entrypoint, sourceDir, envDir) {
  const { file, relative, name } = parseEntrypoint(entrypoint, sourceDir);
  if (!fs.existsSync(file)) {
    throw new EntrypointError(
      `entrypoint file '${relative}' not found in the crew's folder (is the entrypoint relative to it?)`,
    );
  }
  await registerTypeScript(envDir);
  let module;
  try {
    module = await import(pathToFileURL(file).href);
  } catch (err) {
    throw explainImport(err, relative);
  }
  // A CommonJS module imported from ESM has its exports on `default` too.
  let obj = name === "default" ? module.default : module[name];
  if (obj === undefined && module.default && typeof module.default === "object") obj = module.default[name];
  if (obj === undefined) {
    const names = Object.keys(module).filter((k) => k !== "default" && k !== "module.exports");
    const hint = names.length ? `; it exports: ${names.slice(0, 12).join(", ")}` : "";
    throw new EntrypointError(`'${relative}' has no export '${name}'${hint}`);
  }
  if (!langgraph.isGraph(obj) && typeof obj !== "function") {
    throw new EntrypointError(
      `export '${name}' of '${relative}' is not a LangGraph graph (or a function); got ${typeof obj}`,
    );
  }
  return obj;
}

async function invoke(obj, input, runId) {
  if (langgraph.isGraph(obj)) return langgraph.run(obj, input, runId);
  return langgraph.jsonable(await obj(input));
}

async function main() {
  const [envDir, sourceDir] = process.argv.slice(2);
  try {
    flushStdout = protocol.openChannel();
  } catch (err) {
    process.stderr.write(`crewyard runtime: the protocol's channels are not open: ${err.message}\n`);
    process.exit(2);
  }
  protocol.send({ t: "hello", v: protocol.VERSION, runtime: protocol.RUNTIME });
  // From here on a crash anywhere (a promise the crew forgot) is the run's error.
  process.on("uncaughtException", (err) => {
    if (exiting) return; // the run has its last line already
    report(err);
    exit(1);
  });
  process.on("unhandledRejection", (err) => {
    if (exiting) return; // the run has its last line already
    report(err);
    exit(1);
  });

  let prepare;
  let framework;
  try {
    prepare = await protocol.expect("prepare");
    linger = prepare.linger === true;
    Object.assign(process.env, stringMap(prepare.env ?? {}, "prepare.env"));
    framework = String(prepare.framework ?? "");
    if (!FRAMEWORKS.has(framework)) {
      throw new protocol.ProtocolError(`the Node runtime runs langgraph-js crews, not '${framework}'`);
    }
  } catch (err) {
    report(err);
    return exit(2);
  }
  for (const [key, field] of [["CREWYARD_PROJECT", "project"], ["CREWYARD_DEPLOYMENT_ID", "deployment_id"]]) {
    if (typeof prepare[field] === "string") process.env[key] = prepare[field];
  }
  const entrypoint = String(prepare.entrypoint ?? "");
  process.env.CREWYARD_ENTRYPOINT = entrypoint;
  process.env.CREWYARD_FRAMEWORK = framework;

  let obj;
  try {
    obj = await load(entrypoint, sourceDir, envDir);
  } catch (err) {
    report(err); // the crew's failure is the run's result, whatever it is
    return exit(1);
  }
  flushStdout();
  protocol.send({ t: "ready" });

  let start;
  try {
    start = await protocol.expect("start");
    if (typeof start.input !== "object" || start.input === null || Array.isArray(start.input)) {
      throw new protocol.ProtocolError("start.input must be a JSON object");
    }
  } catch (err) {
    report(err);
    return exit(2);
  }
  if (start.thread !== undefined && start.thread !== null) {
    // Running without the thread's state would quietly lose the conversation: say so instead.
    report(new Error("threads are not supported for langgraph-js crews yet; invoke the crew without a thread"));
    return exit(1);
  }
  const runId = String(start.run_id ?? "");
  process.env.CREWYARD_RUN_ID = runId;
  protocol.serveReplies();
  let output;
  try {
    output = await invoke(obj, start.input, runId);
  } catch (err) {
    if (exiting) return;
    report(err);
    return exit(1);
  }
  if (exiting) return; // a crash of the crew's ended the run meanwhile: its error is the last line
  flushStdout();
  protocol.send({ t: "result", output: output ?? null });
  return exit(0);
}

// A tiny SDK for crews: crewyard.emit("tool.called", {...}) and crewyard.log("…", "warning").
globalThis.crewyard = Object.freeze({
  emit: (type, data = {}) => protocol.send({ t: "event", type: String(type), data: langgraph.jsonable(data) }),
  log: (message, level = "info") => protocol.log(message, level, "sdk"),
  request: protocol.request,
});

await main();
