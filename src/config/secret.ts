/**
 * A secret given in the configuration as itself (`<key>`), in a file (`<key>_file`, one trailing
 * newline dropped) or in an environment variable (`<key>_env`). The schema checks that at most one
 * is given; what cannot be read goes to `problems` by key path.
 */
import { readFileSync } from 'node:fs';

export function resolveSecret(
  path: string,
  given: { value?: string | undefined; file?: string | undefined; env?: string | undefined },
  env: NodeJS.ProcessEnv,
  problems: string[],
): string | undefined {
  let secret = given.value;
  if (given.file !== undefined) {
    try {
      secret = readFileSync(given.file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`${path}_file: cannot read ${given.file} (${(err as Error).message})`);
    }
  }
  if (given.env !== undefined) {
    secret = env[given.env];
    if (secret === undefined) problems.push(`${path}_env: ${given.env} is not set`);
  }
  return secret;
}
