/**
 * What ships is what runs: every package that `src/` imports at run time (static or dynamic
 * `import`, not `import type`) must be a `dependency` in package.json, because users install with
 * `npm install docxy` / `npm ci --omit=dev` (the Dockerfile) and devDependencies are not there.
 * Regression: `jose` was a devDependency, so a production install with `auth.anonymous: false`
 * exited at start with "Cannot find package 'jose'".
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** The package a specifier names (`@scope/pkg/sub` -> `@scope/pkg`), or undefined for relative and built-in ones. */
export function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:'))
    return undefined;
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? '');
  return builtinModules.includes(name) ? undefined : name;
}

/** Run-time imports of one file: `import x from 'p'`, `import 'p'`, `export … from 'p'`, `import('p')`; not `import type`. */
export function runtimeImports(text: string): string[] {
  const found: string[] = [];
  const statement = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(statement)) {
    const typeOnly = m[2] !== undefined || /^\s*(import|export)\s+type\s/.test(m[0]);
    if (!typeOnly && m[3] !== undefined) found.push(m[3]);
  }
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g))
    if (m[1] !== undefined) found.push(m[1]);
  return found;
}

test('runtimeImports finds static, side-effect and dynamic imports and skips type-only ones', () => {
  const text = [
    "import { a } from 'alpha';",
    "import type { B } from 'beta';",
    "import 'gamma/setup';",
    "export { d } from '@scope/delta/sub';",
    "export type { E } from 'epsilon';",
    "const z = await import('zeta');",
    "import {\n  x,\n  y,\n} from 'eta';",
  ].join('\n');
  assert.deepEqual(runtimeImports(text).map(packageOf).sort(), [
    '@scope/delta',
    'alpha',
    'eta',
    'gamma',
    'zeta',
  ]);
  assert.equal(packageOf('node:fs'), undefined);
  assert.equal(packageOf('fs'), undefined);
  assert.equal(packageOf('./x.ts'), undefined);
});

test('every package src/ imports at run time is a dependency, not a devDependency', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  const deps = new Set(Object.keys(pkg.dependencies ?? {}));
  const missing = new Map<string, string[]>();
  for (const file of sources(join(root, 'src'))) {
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      const name = packageOf(spec);
      if (name === undefined || deps.has(name)) continue;
      missing.set(name, [...(missing.get(name) ?? []), file.slice(root.length + 1)]);
    }
  }
  assert.deepEqual(Object.fromEntries(missing), {}, 'imported at run time but not in "dependencies"');
});
