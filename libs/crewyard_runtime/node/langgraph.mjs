// LangGraph.js inside a run: node and tool activity as run events, the final state as output.
//
// The same mapping as the Python runtime's langgraph_hooks.py. A compiled graph is invoked with
// the run's input as its initial state and a LangChain callback handler in its config (a plain
// object of handler methods: LangChain wraps it, so the runtime needs no LangChain of its own):
//
// - each node run (a chain run tagged `graph:step:N` whose name is its `langgraph_node`) →
//   `task.started` / `task.completed` with `task` = the node's name;
// - each tool run (a ToolNode, or a tool invoked inside a node) → `tool.called` / `tool.result`
//   / `tool.error`, with `agent` = the node that ran it;
// - each chat-model call → a debug `log` line (model, node; tokens when it ends).
//
// Handlers are awaited (`awaitHandlers`), so events leave in the order the graph made them and
// all of them before the result. The output is the final state made JSON-friendly: messages
// become {role, content} objects (plus tool_calls / tool_call_id / name when present).

import { send } from "./protocol.mjs";

const ROLES = { human: "user", ai: "assistant", system: "system", tool: "tool", function: "function" };
// Thrown by LangGraph to steer control flow (interrupts, Command to a parent graph): not a failure.
const CONTROL_FLOW = new Set(["GraphInterrupt", "NodeInterrupt", "ParentCommand", "GraphBubbleUp"]);
const MAX_TEXT = 16_000;
const MAX_DEPTH = 64;

export function isGraph(obj) {
  if (obj === null || (typeof obj !== "object" && typeof obj !== "function")) return false;
  if (typeof obj.compile === "function" && typeof obj.invoke !== "function") {
    return typeof obj.addNode === "function";
  }
  return typeof obj.invoke === "function" && typeof obj.getGraph === "function" && typeof obj.stream === "function";
}

function messageType(value) {
  for (const method of ["getType", "_getType"]) {
    if (typeof value?.[method] === "function") {
      try {
        return String(value[method]());
      } catch {
        return null;
      }
    }
  }
  return null;
}

function isMessage(value) {
  return typeof value === "object" && value !== null && "content" in value && messageType(value) !== null;
}

function message(msg, depth) {
  const kind = messageType(msg);
  const out = { role: ROLES[kind] ?? kind, content: jsonable(msg.content, depth + 1) };
  if (Array.isArray(msg.tool_calls) && msg.tool_calls.length) {
    out.tool_calls = msg.tool_calls.map((c) => ({ id: c.id ?? null, name: c.name ?? null, args: jsonable(c.args, depth + 1) }));
  }
  for (const attr of ["tool_call_id", "name"]) {
    if (msg[attr]) out[attr] = String(msg[attr]);
  }
  if (msg.status === "error") out.status = "error";
  return out;
}

/** A JSON-friendly copy of a LangGraph state, node update or tool output. */
export function jsonable(value, depth = 0) {
  if (value === null || value === undefined) return null;
  if (depth > MAX_DEPTH) return "[nested too deep]";
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return value.toString();
    case "function":
    case "symbol":
      return String(value.name ?? value.description ?? value);
  }
  if (isMessage(value)) return message(value, depth);
  if (Array.isArray(value) || value instanceof Set) return [...value].map((v) => jsonable(v, depth + 1));
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), jsonable(v, depth + 1)]));
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (ArrayBuffer.isView(value)) return `[${value.constructor.name} of ${value.byteLength} bytes]`;
  if (value.constructor?.name === "Command" && ("update" in value || "goto" in value)) {
    return { update: jsonable(value.update, depth + 1), goto: jsonable(value.goto, depth + 1) };
  }
  if (typeof value.toJSON === "function" && !("lc_serializable" in value)) {
    try {
      return jsonable(value.toJSON(), depth + 1);
    } catch {
      return String(value);
    }
  }
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "function") out[k] = jsonable(v, depth + 1);
  }
  return out;
}

function clip(value) {
  if (typeof value === "string" && value.length > MAX_TEXT) {
    return `${value.slice(0, MAX_TEXT)}… (${value.length - MAX_TEXT} more characters)`;
  }
  return value;
}

function event(type, data) {
  const clipped = {};
  for (const [k, v] of Object.entries(data)) clipped[k] = clip(v);
  send({ t: "event", type, data: clipped });
}

function debug(text, level = "debug") {
  send({ t: "log", level, message: text, stream: "langgraph" });
}

function toolInput(input) {
  try {
    return JSON.parse(input);
  } catch {
    return input;
  }
}

function errorText(err) {
  return `${err?.name ?? "Error"}: ${err?.message ?? err}`;
}

/** A fresh set of handler methods for one run. */
export function makeHandler() {
  const nodes = new Map();
  const tools = new Map();
  return {
    awaitHandlers: true, // in order, and all of them before the result
    raiseError: false, // reporting must never break the crew
    handleChainStart(chain, _inputs, runId, _parentRunId, tags, metadata, _runType, runName) {
      const node = metadata?.langgraph_node;
      const name = runName ?? chain?.name;
      const isStep = (tags ?? []).some((t) => String(t).startsWith("graph:step:"));
      if (node && name === node && isStep && !String(node).startsWith("__")) {
        nodes.set(runId, String(node));
        event("task.started", { task: String(node) });
      }
    },
    handleChainEnd(outputs, runId) {
      const node = nodes.get(runId);
      if (node === undefined) return;
      nodes.delete(runId);
      event("task.completed", { task: node, output: jsonable(outputs) });
    },
    handleChainError(err, runId) {
      const node = nodes.get(runId);
      if (node === undefined) return;
      nodes.delete(runId);
      if (CONTROL_FLOW.has(err?.name) || CONTROL_FLOW.has(err?.constructor?.name)) {
        event("task.completed", { task: node });
      } else {
        debug(`node '${node}' failed: ${errorText(err)}`, "error");
      }
    },
    handleToolStart(tool, input, runId, _parentRunId, _tags, metadata, runName) {
      const name = String(runName ?? tool?.name ?? (Array.isArray(tool?.id) ? tool.id.at(-1) : null) ?? "tool");
      tools.set(runId, name);
      const node = metadata?.langgraph_node;
      event("tool.called", { tool: name, input: jsonable(toolInput(input)), agent: node ? String(node) : null });
    },
    handleToolEnd(output, runId) {
      const name = tools.get(runId) ?? "tool";
      tools.delete(runId);
      event("tool.result", { tool: name, output: jsonable(isMessage(output) ? output.content : output) });
    },
    handleToolError(err, runId) {
      const name = tools.get(runId) ?? "tool";
      tools.delete(runId);
      event("tool.error", { tool: name, error: errorText(err) });
    },
    handleChatModelStart(_llm, _messages, _runId, _parentRunId, _extra, _tags, metadata) {
      const model = metadata?.ls_model_name ?? "model";
      const node = metadata?.langgraph_node;
      debug(`LLM call to ${model}${node ? ` (${node})` : ""}`);
    },
    handleLLMEnd(output) {
      const usage = output?.llmOutput?.tokenUsage ?? output?.llmOutput?.token_usage;
      const total = usage?.totalTokens ?? usage?.total_tokens;
      debug(`LLM call completed${total ? `, ${total} tokens` : ""}`);
    },
    handleLLMError(err) {
      debug(`LLM call failed: ${errorText(err)}`, "error");
    },
  };
}

/** Run a compiled graph (or a graph builder, compiled first) with the run's input. */
export async function run(graph, input, runId) {
  if (typeof graph.invoke !== "function") graph = graph.compile();
  // thread_id lets graphs compiled with a checkpointer run; without one it is ignored.
  const config = { callbacks: [makeHandler()], configurable: { thread_id: runId || "crewyard" } };
  return jsonable(await graph.invoke(input, config));
}
