/**
 * The graph: `research` asks the model, runs the tool calls it makes, then `write` reports.
 *
 * Input: `{"topic": "..."}`. Output: the final state — the conversation, and `report` (also
 * written to `report.md` in the artifacts folder). The model is `gpt-4o-mini` by default
 * (`OPENAI_MODEL`); `ChatOpenAI` reads `OPENAI_API_KEY` and `OPENAI_BASE_URL` from the
 * environment.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { type BaseMessage, HumanMessage, SystemMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { Annotation, END, messagesStateReducer, START, StateGraph } from "@langchain/langgraph";
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";

const NOTES: Record<string, string> = {
  "Agent graphs": "LangGraph models an agent as a graph of nodes that read and update a shared state.",
  "Tool calls": "Chat models request tools through tool calls; the results go back as tool messages.",
  Checkpoints: "A checkpointer saves the state after every step, so a thread can be resumed later.",
  Deployment: "Deployed graphs run isolated per run and stream node and tool events as they happen.",
};
const MAX_TOOL_ROUNDS = 3; // a model that keeps asking for tools must not loop forever

const State = Annotation.Root({
  topic: Annotation<string>(),
  messages: Annotation<BaseMessage[]>({ reducer: messagesStateReducer, default: () => [] }),
  report: Annotation<string>(),
});

const searchNotes = tool(
  async ({ query }: { query: string }) => {
    const words = new Set(query.toLowerCase().split(/\s+/).filter((w) => w.length > 2));
    const hits = Object.entries(NOTES)
      .filter(([title, text]) => `${title} ${text}`.toLowerCase().split(/\s+/).some((w) => words.has(w)))
      .map(([title, text]) => `[${title}] ${text}`);
    return hits.join("\n") || `No notes mention '${query}'.`;
  },
  {
    name: "search_notes",
    description: "Search the team's research notes; returns the notes that share words with the query.",
    schema: z.object({ query: z.string().describe("what to look for") }),
  },
);

function model(): ChatOpenAI {
  return new ChatOpenAI({ model: process.env.OPENAI_MODEL ?? "gpt-4o-mini", temperature: 0 });
}

async function research(state: typeof State.State) {
  const topic = state.topic || "agent graphs";
  console.log(`researching ${topic}`);
  const system = new SystemMessage("You are a researcher. Always search the notes before answering.");
  const added: BaseMessage[] = [new HumanMessage(`Research ${topic}: list the relevant facts from the notes.`)];
  const withTools = model().bindTools([searchNotes]);
  let reply = await withTools.invoke([system, ...added]);
  for (let round = 0; round < MAX_TOOL_ROUNDS && reply.tool_calls?.length; round++) {
    added.push(reply);
    for (const call of reply.tool_calls) added.push(await searchNotes.invoke(call)); // → ToolMessages
    reply = await withTools.invoke([system, ...added]);
  }
  return { topic, messages: [...added, reply] };
}

async function write(state: typeof State.State) {
  const findings = state.messages.at(-1)?.content ?? "";
  const reply = await model().invoke([
    new SystemMessage("You write short markdown reports: a title, a summary, a few bullets."),
    new HumanMessage(`Write a report about ${state.topic} from these findings:\n${findings}`),
  ]);
  const report = String(reply.content);
  writeFileSync(path.join(artifactsDir(), "report.md"), report, "utf8");
  return { report, messages: [reply] };
}

function artifactsDir(): string {
  // crewyard and Crewship both collect files from the artifacts folder.
  const dir = process.env.CREWYARD_ARTIFACTS_DIR ?? "/app/artifacts";
  try {
    mkdirSync(dir, { recursive: true });
    return dir;
  } catch {
    return process.cwd(); // running locally, outside any platform
  }
}

export const graph = new StateGraph(State)
  .addNode("research", research)
  .addNode("write", write)
  .addEdge(START, "research")
  .addEdge("research", "write")
  .addEdge("write", END)
  .compile();
