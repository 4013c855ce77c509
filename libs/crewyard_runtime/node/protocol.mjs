// The Node runtime's side of the runner <-> runtime protocol (../protocol.json, the one
// definition both runtimes follow).
//
// The runner starts Node behind a small shell step that moves the process's standard output to
// file descriptor 3 and its standard input to 4, and points 1 at standard error and 0 at
// /dev/null (see `runtime_command` in the runner's backends). So the protocol's two channels
// belong to the runtime alone: raw writes by the crew or by programs it starts land on standard
// error, which the runner reads as log text, and nothing the crew does can read a reply meant for
// the runtime. What the crew writes through `process.stdout` (`console.log` included) becomes
// `log` messages here, line by line, as `print` does in the Python runtime.

import fs from "node:fs";
import net from "node:net";
import { Worker } from "node:worker_threads";

export const VERSION = 4;
export const RUNTIME = "node";
export const OUT_FD = 3;
export const IN_FD = 4;
// Every line but `result` stays under the protocol's 64 KiB; text beyond this is cut.
export const MAX_TEXT_BYTES = 60 * 1024;
export const MAX_LINE_BYTES = 64 * 1024;

export class ProtocolError extends Error {
  name = "ProtocolError";
}

export class RequestFailed extends Error {
  name = "RequestFailed";
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.reason = message;
  }
}

let open = false;

/** `text` within `limit` UTF-8 bytes, saying how much was cut. */
export function cut(text, limit = MAX_TEXT_BYTES) {
  const data = Buffer.from(text, "utf8");
  if (data.length <= limit) return text;
  // Decoding a prefix may end inside a character: drop the replacement character it makes.
  const kept = data.subarray(0, limit).toString("utf8").replace(/\uFFFD$/, "");
  return `${kept} … [${data.length - limit} bytes cut]`;
}

function writeAll(fd, data) {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
    }
  }
}

function encode(message) {
  const seen = new WeakSet();
  return JSON.stringify(message, (_key, value) => {
    if (typeof value === "bigint") return value.toString();
    if (typeof value === "object" && value !== null) {
      if (seen.has(value)) return "[circular]";
      seen.add(value);
    }
    return value;
  });
}

/** Write one message to the runner (synchronously: lines keep the order they were made in). */
export function send(message) {
  if (!open) return;
  if (message.t === "log" && typeof message.message === "string") {
    message = { ...message, message: cut(message.message) };
  }
  let line = encode(message);
  if (message.t !== "result" && Buffer.byteLength(line, "utf8") > MAX_LINE_BYTES) {
    // Only an event's payload can get here (log text is cut): say so instead of breaking the line.
    line = encode({
      t: "log",
      level: "warning",
      stream: "runtime",
      message:
        `a ${message.t} message of ${line.length} characters was dropped (${message.type ?? ""}):` +
        ` over the protocol's ${MAX_LINE_BYTES}-byte line limit`,
    });
  }
  try {
    writeAll(OUT_FD, Buffer.from(line + "\n", "utf8"));
  } catch {
    open = false; // the runner is gone: nobody is listening any more
  }
}

export function log(message, level = "info", stream = "runtime") {
  send({ t: "log", level, message: String(message), stream });
}

/** `process.stdout` of the crew: each written line becomes a `log` message (level info). */
function captureStdout() {
  let buffer = "";
  const flush = () => {
    if (buffer) {
      const line = buffer;
      buffer = "";
      send({ t: "log", level: "info", message: line, stream: "stdout" });
    }
  };
  process.stdout.write = (chunk, encoding, callback) => {
    if (typeof encoding === "function") [callback, encoding] = [encoding, undefined];
    buffer += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString(encoding ?? "utf8");
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) send({ t: "log", level: "info", message: line, stream: "stdout" });
    if (Buffer.byteLength(buffer) > MAX_TEXT_BYTES) flush(); // a line that never ends goes in pieces
    if (callback) process.nextTick(callback);
    return true;
  };
  return flush;
}

// -- messages from the runner: one JSON object per line on IN_FD --

const inbox = [];
const waiters = [];
const endWaiters = [];
let inboxClosed = false;
let inboxError = null;

function deliver(item) {
  const waiter = waiters.shift();
  if (waiter) waiter(item);
  else inbox.push(item);
}

// -- the watchdog (protocol.json: keepalive) --
//
// Each keepalive says until when the run may go on: `deadline` on the runner's CLOCK_MONOTONIC
// (libuv's hrtime is that clock), taken as it is when this machine has the runner's boot id,
// else `within` seconds from now. The first one arms the watchdog: a worker thread of its own
// (its own event loop, so a crew that blocks the main one — a busy loop, a write to a runner that
// stopped reading — cannot hold it up) that kills the runtime's process group at the deadline.
// Nothing is written on the way out: the runner is not reading, and a full pipe would block.

let BOOT = null;
try {
  BOOT = fs.readFileSync("/proc/sys/kernel/random/boot_id", "ascii").trim() || null;
} catch {}

const WATCHDOG = `
const { workerData } = require("node:worker_threads");
const deadline = new BigInt64Array(workerData);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  const due = Atomics.load(deadline, 0);
  if (due > 0n && process.hrtime.bigint() >= due) break;
  Atomics.wait(pause, 0, 0, 20);
}
try { process.kill(-process.pid, "SIGKILL"); } catch {} // our own group, when we lead one
process.kill(process.pid, "SIGKILL");
`;
let watchdogDeadline = null; // BigInt64Array over shared memory: nanoseconds of hrtime, 0 unarmed
const DRAIN_NS = 250_000_000n;
const LATEST_NS = 2n ** 62n; // about 146 years of hrtime: no bound is meant past it
const LATEST_S = 1e9;

function keepalive(message) {
  const within = message.within;
  if (typeof within !== "number" || !Number.isFinite(within) || within <= 0) return;
  let due;
  // (In seconds first: a number past what BigInt takes from a double would throw.)
  if (BOOT !== null && message.boot === BOOT && typeof message.deadline === "number" && Number.isFinite(message.deadline)) {
    due = BigInt(Math.round(Math.min(Math.max(message.deadline, 0), LATEST_S) * 1e9));
  } else {
    due = process.hrtime.bigint() + BigInt(Math.round(Math.min(within, LATEST_S) * 1e9)); // another machine's clock
  }
  // Deadlines only move on, and never into the past: a keepalive read late (the crew held the
  // loop) gives those queued behind it a moment to be read (they move it on if the runner lives).
  const soonest = process.hrtime.bigint() + DRAIN_NS;
  if (due < soonest) due = soonest;
  if (due > LATEST_NS) due = LATEST_NS; // a bound past 64 bits would wrap into the past
  if (watchdogDeadline !== null && Atomics.load(watchdogDeadline, 0) > due) return;
  if (watchdogDeadline === null) {
    watchdogDeadline = new BigInt64Array(new SharedArrayBuffer(8));
    Atomics.store(watchdogDeadline, 0, due);
    new Worker(WATCHDOG, { eval: true, workerData: watchdogDeadline.buffer }).unref();
  } else {
    Atomics.store(watchdogDeadline, 0, due);
  }
}

function readInbox() {
  const socket = new net.Socket({ fd: IN_FD, readable: true, writable: false });
  let pending = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk) => {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (!line.trim()) continue;
      let message;
      try {
        message = JSON.parse(line);
      } catch (err) {
        deliver(new ProtocolError(`the runner sent a line that is not JSON: ${err.message}`));
        continue;
      }
      if (typeof message !== "object" || message === null || typeof message.t !== "string") {
        deliver(new ProtocolError("the runner sent a message without a type"));
        continue;
      }
      if (message.t === "keepalive") {
        keepalive(message); // taken as it is read: it is never anyone's next message
        continue;
      }
      deliver(message);
    }
  });
  const end = () => {
    if (inboxClosed) return;
    inboxClosed = true;
    while (waiters.length) waiters.shift()(null);
    while (endWaiters.length) endWaiters.shift()();
  };
  socket.on("end", end);
  socket.on("close", end);
  socket.on("error", (err) => {
    inboxError = err;
    end();
  });
}

/** Resolves once the runner has ended our input, or after `timeoutMs` (`prepare.linger`). */
export function inputEnded(timeoutMs) {
  if (inboxClosed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    endWaiters.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The next message from the runner, or null when it closed the channel. */
export function receive() {
  if (inbox.length) {
    const item = inbox.shift();
    return item instanceof Error ? Promise.reject(item) : Promise.resolve(item);
  }
  if (inboxClosed) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    waiters.push((item) => (item instanceof Error ? reject(item) : resolve(item)));
  });
}

export async function expect(kind) {
  const message = await receive();
  if (message === null) {
    const why = inboxError ? ` (${inboxError.message})` : "";
    throw new ProtocolError(`the runner closed the channel before sending '${kind}'${why}`);
  }
  if (message.t !== kind) throw new ProtocolError(`expected '${kind}' from the runner, got '${message.t}'`);
  return message;
}

// -- requests to the platform, answered by replies --

let nextId = 1;
const pendingRequests = new Map();
let serving = null;

/** Hand every `reply` to the request waiting for it (after `start`). */
export function serveReplies() {
  serving = (async () => {
    for (;;) {
      let message;
      try {
        message = await receive();
      } catch {
        continue; // a broken line: the request it answered times out or the run ends
      }
      if (message === null) break;
      if (message.t !== "reply") continue; // other kinds are for later versions of the runner
      const waiter = pendingRequests.get(String(message.id));
      if (waiter) {
        pendingRequests.delete(String(message.id));
        waiter(message);
      }
    }
    for (const waiter of pendingRequests.values()) waiter(null);
    pendingRequests.clear();
  })();
  return serving;
}

/** Ask the platform for something (`op` with `args`); resolves to the reply's value. */
export function request(op, args = {}, timeoutMs = undefined) {
  if (!open || inboxClosed) {
    return Promise.reject(new RequestFailed("unavailable", "the runtime has no channel to the platform"));
  }
  const id = `r${nextId++}`;
  return new Promise((resolve, reject) => {
    let timer;
    pendingRequests.set(id, (reply) => {
      clearTimeout(timer);
      if (reply === null) return reject(new RequestFailed("unavailable", "the runner closed the channel"));
      if (reply.ok === true) return resolve(reply.value ?? null);
      const error = typeof reply.error === "object" && reply.error !== null ? reply.error : {};
      reject(new RequestFailed(String(error.code ?? "error"), String(error.message ?? "request failed")));
    });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        pendingRequests.delete(id);
        reject(new RequestFailed("timeout", `no reply to '${op}' within ${timeoutMs} ms`));
      }, timeoutMs);
    }
    send({ t: "request", id, op, args });
  });
}

/** Take the protocol's channels; returns a function that flushes the crew's unfinished line. */
export function openChannel() {
  fs.fstatSync(OUT_FD); // fails loudly when started without the channel set up
  fs.fstatSync(IN_FD);
  open = true;
  readInbox(); // it keeps the process alive while it waits: main ends it with process.exit
  return captureStdout();
}
