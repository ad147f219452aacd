/**
 * `docxy htpasswd add FILE USER`: adds or replaces a user with a bcrypt password, in the format
 * `htpasswd -B` writes. The password is read from standard input (one line; a terminal is asked
 * twice), never from the command line where `ps` would show it.
 */
import { createInterface } from 'node:readline';
import { htpasswdAdd } from '../auth/htpasswd.ts';

async function readLine(prompt: string | undefined): Promise<string> {
  const rl = createInterface({
    input: process.stdin,
    output: prompt === undefined ? undefined : process.stderr,
    terminal: false,
  });
  if (prompt !== undefined) process.stderr.write(prompt);
  for await (const line of rl) {
    rl.close();
    return line;
  }
  throw new Error('no password on standard input');
}

export async function htpasswdAddCommand(
  file: string,
  user: string,
  out: (s: string) => void,
): Promise<number> {
  const tty = process.stdin.isTTY;
  const password = await readLine(tty ? 'New password: ' : undefined);
  if (tty && (await readLine('Re-type new password: ')) !== password) {
    out('passwords do not match\n');
    return 1;
  }
  if (password === '') {
    out('an empty password is not allowed\n');
    return 1;
  }
  htpasswdAdd(file, user, password);
  out(`${file}: user ${user} added\n`);
  return 0;
}
