// JavaScript crews of the backend tests, one export per situation.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

type Input = Record<string, unknown>;

/** Writes into its working directory and into CREWYARD_ARTIFACTS_DIR; reports where it runs. */
export async function artifacts(input: Input) {
  writeFileSync("from-cwd.txt", "written relative to the working directory\n");
  const dir = path.join(process.env.CREWYARD_ARTIFACTS_DIR ?? "/app/artifacts", "nested");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "report.md"), `# ${input.title ?? "report"}\n`);
  console.log("wrote two files");
  return { cwd: process.cwd(), node: process.versions.node, uid: process.getuid?.() };
}

/** Waits until it is stopped; says so when SIGTERM arrives, then exits. */
export async function waits(_input: Input) {
  process.on("SIGTERM", () => {
    console.log("got SIGTERM");
    process.exit(143);
  });
  console.log("waiting");
  await new Promise(() => setInterval(() => {}, 1000));
}

/** Takes memory until something stops it (Buffers: outside V8's heap, so only the limit can). */
export async function hog(_input: Input) {
  const kept: Buffer[] = [];
  for (;;) {
    kept.push(Buffer.alloc(32 * 1024 * 1024, 1));
    console.log(`holding ${kept.length * 32} MiB`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const importedWith = process.env.CREW_COLOR ?? null;

/** What the crew saw when it was imported and when it ran (a warm sandbox imports long before). */
export async function seen(input: Input) {
  return { importedWith, runId: process.env.CREWYARD_RUN_ID, input };
}
