/**
 * Users and passwords: an htpasswd file with bcrypt entries (`htpasswd -B` writes `$2y$`, the
 * same algorithm as `$2a$`/`$2b$`) and users listed in the config. The file is re-read when it
 * changes, so `docxy htpasswd add` takes effect without a restart.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';

export interface UserStore {
  /** Whether `password` is the user's; a failed check costs as much as a good one (no user enumeration). */
  verify(user: string, password: string): Promise<boolean>;
}

export function parseHtpasswd(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const i = t.indexOf(':');
    if (i <= 0) continue;
    const hash = t.slice(i + 1);
    // Only bcrypt: crypt, MD5 (apr1) and SHA1 entries are too weak to accept.
    if (/^\$2[aby]\$\d\d\$/.test(hash)) out.set(t.slice(0, i), hash);
  }
  return out;
}

export function createUserStore(opts: {
  htpasswd?: string;
  users: readonly { name: string; password_hash: string }[];
}): UserStore {
  const fromConfig = new Map(opts.users.map((u) => [u.name, u.password_hash]));
  // Checked against for unknown users, so a failed login takes as long whether or not the user
  // exists; made on first use (a bcrypt hash costs tens of milliseconds).
  let decoyHash: string | undefined;
  let fileUsers = new Map<string, string>();
  let fileStamp = '';

  function current(): Map<string, string> {
    if (opts.htpasswd === undefined) return fromConfig;
    try {
      const st = statSync(opts.htpasswd);
      const stamp = `${st.mtimeMs}:${st.size}`;
      if (stamp !== fileStamp) {
        fileUsers = parseHtpasswd(readFileSync(opts.htpasswd, 'utf8'));
        fileStamp = stamp;
      }
    } catch {
      fileUsers = new Map();
      fileStamp = '';
    }
    return new Map([...fileUsers, ...fromConfig]);
  }

  return {
    async verify(user, password) {
      const hash = current().get(user);
      decoyHash ??= bcrypt.hashSync(randomBytes(16).toString('hex'), 10);
      const ok = await bcrypt.compare(password, (hash ?? decoyHash).replace(/^\$2y\$/, '$2b$'));
      return hash !== undefined && ok;
    },
  };
}

/** Adds or replaces a user in an htpasswd file, as `htpasswd -B` would (bcrypt, `$2y$`, cost 10). */
export function htpasswdAdd(file: string, user: string, password: string): void {
  if (user === '' || user.includes(':')) throw new Error('a user name must be non-empty and contain no ":"');
  let lines: string[] = [];
  try {
    lines = readFileSync(file, 'utf8')
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '');
  } catch {
    /* a new file */
  }
  const hash = bcrypt.hashSync(password, 10).replace(/^\$2b\$/, '$2y$');
  lines = lines.filter((l) => !l.startsWith(`${user}:`));
  lines.push(`${user}:${hash}`);
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
}
