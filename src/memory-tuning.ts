/**
 * Process-level memory settings that must be in place before the process starts: V8's young
 * generation (`--max-semi-space-size`) and glibc's malloc arenas (`MALLOC_ARENA_MAX`).
 *
 * Why: under 1,000 keep-alive connections (bench/soak.ts) RSS peaked at 240 MiB with Node's
 * defaults, although the live heap stays near 40 MiB. Two parts of that are not the JavaScript
 * heap the heap governor steers: V8 grows each semi-space to 16 MiB (two of them, plus the
 * scavenger's copy), and glibc gives each thread that allocates (libuv's pool, V8's GC helpers)
 * its own arena, up to 8 per core, whose freed pages are rarely handed back. Both can only be set
 * when the process starts, and an npm-installed `docxy` cannot pass flags to its own `node`; so
 * `docxy serve` re-executes itself once, in place (`process.execve`: same PID, so supervisors and
 * PID files stay right), with the settings applied. A setting the operator already gave (in
 * `NODE_OPTIONS`, node's own flags or the environment) is left as it is.
 */

export interface MemoryTuning {
  /** Bytes for V8's `--max-semi-space-size`; 0 = V8's default. */
  readonly semi_space: number;
  /** glibc `MALLOC_ARENA_MAX`; 0 = glibc's default. */
  readonly malloc_arenas: number;
}

export interface ProcessView {
  readonly execPath: string;
  readonly execArgv: readonly string[];
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface Reexec {
  readonly file: string;
  readonly args: string[];
  readonly env: Record<string, string>;
  /** What changes, for the log line. */
  readonly applied: string[];
}

const SEMI_SPACE_FLAG = /^--max[-_]semi[-_]space[-_]size(=|$)/;

function givenFlag(view: ProcessView): boolean {
  const nodeOptions = (view.env.NODE_OPTIONS ?? '').split(/\s+/);
  return [...view.execArgv, ...nodeOptions].some((a) => SEMI_SPACE_FLAG.test(a));
}

/**
 * What to re-execute with, or undefined when nothing is to change (the settings are 0, already
 * in place, or chosen by the operator). Running it again in the re-executed process returns
 * undefined, so there is never a second re-exec.
 */
export function planMemoryReexec(tuning: MemoryTuning, view: ProcessView): Reexec | undefined {
  const flags: string[] = [];
  const env: Record<string, string> = {};
  const applied: string[] = [];
  const semiMiB = Math.max(1, Math.round(tuning.semi_space / 1024 ** 2));
  if (tuning.semi_space > 0 && !givenFlag(view)) {
    flags.push(`--max-semi-space-size=${semiMiB}`);
    applied.push(`--max-semi-space-size=${semiMiB}`);
  }
  if (tuning.malloc_arenas > 0 && view.env.MALLOC_ARENA_MAX === undefined) {
    env.MALLOC_ARENA_MAX = String(tuning.malloc_arenas);
    applied.push(`MALLOC_ARENA_MAX=${tuning.malloc_arenas}`);
  }
  if (applied.length === 0) return undefined;
  const inherited: Record<string, string> = {};
  for (const [k, v] of Object.entries(view.env)) if (v !== undefined) inherited[k] = v;
  return {
    file: view.execPath,
    args: [view.execPath, ...flags, ...view.execArgv, ...view.argv.slice(1)],
    env: { ...inherited, ...env },
    applied,
  };
}

type Execve = (file: string, args: string[], env: Record<string, string>) => never;

/**
 * Re-executes this process with the plan, when there is one and Node can (`process.execve`,
 * Node >= 22.15 on POSIX). Returns why it did not, for the log; on success it never returns.
 */
export function reexecForMemory(tuning: MemoryTuning): string | undefined {
  const plan = planMemoryReexec(tuning, process);
  if (plan === undefined) return undefined;
  const execve = (process as { execve?: Execve }).execve;
  if (typeof execve !== 'function' || process.platform === 'win32')
    return `memory settings need Node >= 22.15 on Linux to apply (${plan.applied.join(', ')} not applied)`;
  try {
    execve(plan.file, plan.args, plan.env);
  } catch (err) {
    return `could not re-execute with ${plan.applied.join(', ')}: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}
