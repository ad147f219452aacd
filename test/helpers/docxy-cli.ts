/** The `docxy` command line run as its own process from source, for the CLI tests. */
import { join } from 'node:path';
import { runCommand, type CmdResult } from './clients/common.ts';
import { REPO_ROOT } from './packed-install.ts';

export { REPO_ROOT };
export const ENTRY = join(REPO_ROOT, 'test', 'helpers', 'docxy-entry.ts');

/** This environment without DOCXY_* variables, so only the files and flags a test gives count. */
export function cliEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DOCXY_')));
}

export function docxyCli(args: readonly string[]): Promise<CmdResult> {
  return runCommand(process.execPath, ['--import', 'tsx', ENTRY, ...args], {
    env: cliEnv(),
    cwd: REPO_ROOT,
    timeoutMs: 60_000,
  });
}

export const showCmd = (r: CmdResult): string => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
