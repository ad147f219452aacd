/** `docxy config check FILE` / `docxy config print`: validate a configuration and show the result. */
import { stringify } from 'yaml';
import { ConfigError, loadConfig, readConfigFile, validateConfig, type Flags } from '../config/load.ts';

/** Returns the process exit code; problems are printed with their key path. */
export function configCheck(file: string, out: (s: string) => void): number {
  try {
    validateConfig(readConfigFile(file), file);
    out(`${file}: ok\n`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      out(`${file}: ${err.problems.length} problem(s)\n${err.problems.map((p) => `  ${p}\n`).join('')}`);
      return 1;
    }
    throw err;
  }
}

export function configPrint(flags: Flags, out: (s: string) => void): void {
  out(stringify(loadConfig(flags)));
}
