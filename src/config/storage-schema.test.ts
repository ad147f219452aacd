import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { ConfigError, loadConfig, validateConfig } from './load.ts';

/** The problems a tree is refused with (fails when it is accepted). */
function problems(tree: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    validateConfig(tree, 'test', env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return [...err.problems];
  }
  assert.fail('the configuration was accepted');
}

test('storage defaults to the filesystem driver, with no credentials', () => {
  const c = validateConfig({}, 'test', {});
  assert.equal(c.storage.driver, 'filesystem');
  assert.equal(c.storage.s3, undefined);
  assert.equal(c.storage.credentials, undefined);
});

test('storage.driver s3 needs storage.s3 with a valid bucket name; defaults fill the rest', () => {
  assert.deepEqual(problems({ storage: { driver: 's3' } }), [
    'storage.s3: required with driver: s3 (at least bucket)',
  ]);
  assert.match(
    problems({ storage: { driver: 's3', s3: { bucket: 'No_Such' } } }).join(),
    /storage\.s3\.bucket: /,
  );
  assert.match(problems({ storage: { driver: 'gcs' } }).join(), /storage\.driver: /);
  const c = validateConfig({ storage: { driver: 's3', s3: { bucket: 'docxy' } } }, 'test', {});
  assert.deepEqual(
    {
      region: c.storage.s3?.region,
      prefix: c.storage.s3?.prefix,
      pathStyle: c.storage.s3?.force_path_style,
      part: c.storage.s3?.part_size,
      conc: c.storage.s3?.upload_concurrency,
    },
    { region: 'us-east-1', prefix: '', pathStyle: false, part: 8 * 1024 * 1024, conc: 2 },
  );
  // No keys at all: the AWS default chain.
  assert.equal(c.storage.credentials, undefined);
});

test('storage.s3 checks the prefix, the part size and that keys come as a pair', () => {
  const s3 = (extra: Record<string, unknown>): unknown => ({
    storage: { driver: 's3', s3: { bucket: 'docxy', ...extra } },
  });
  assert.match(problems(s3({ prefix: 'docxy' })).join(), /storage\.s3\.prefix: must be empty or end with/);
  assert.match(problems(s3({ part_size: '1MiB' })).join(), /storage\.s3\.part_size: must be between 5MiB/);
  assert.match(problems(s3({ secret_access_key: 'x' })).join(), /storage\.s3\.access_key_id: required/);
  assert.match(
    problems(s3({ access_key_id: 'k', secret_access_key: 'x', secret_access_key_env: 'S' })).join(),
    /storage\.s3\.secret_access_key: give exactly one/,
  );
  assert.match(problems(s3({ access_key_id: 'k' })).join(), /give exactly one/);
  assert.deepEqual(
    validateConfig(s3({ access_key_id: 'k', secret_access_key: 'v' }), 't', {}).storage.credentials,
    {
      accessKeyId: 'k',
      secretAccessKey: 'v',
    },
  );
});

test('the S3 secret comes from its file or variable; a missing one is named by key path', () => {
  const dir = makeTmpDir('storage-config');
  try {
    const file = join(dir.path, 's3.secret');
    writeFileSync(file, 'from-file\n');
    const tree = (extra: Record<string, unknown>): unknown => ({
      storage: { driver: 's3', s3: { bucket: 'docxy', access_key_id: 'k', ...extra } },
    });
    assert.equal(
      validateConfig(tree({ secret_access_key_file: file }), 't', {}).storage.credentials?.secretAccessKey,
      'from-file',
    );
    assert.equal(
      validateConfig(tree({ secret_access_key_env: 'S3_SECRET' }), 't', { S3_SECRET: 'from-env' }).storage
        .credentials?.secretAccessKey,
      'from-env',
    );
    assert.match(
      problems(tree({ secret_access_key_file: join(dir.path, 'absent') })).join(),
      /^storage\.s3\.secret_access_key_file: cannot read /,
    );
    assert.deepEqual(problems(tree({ secret_access_key_env: 'NOPE' })), [
      'storage.s3.secret_access_key_env: NOPE is not set',
    ]);
  } finally {
    dir.remove();
  }
});

test('DOCXY_STORAGE__* sets the storage keys from the environment', () => {
  const c = loadConfig(
    {},
    {
      DOCXY_STORAGE__DRIVER: 's3',
      DOCXY_STORAGE__S3__BUCKET: 'docxy',
      DOCXY_STORAGE__S3__FORCE_PATH_STYLE: 'true',
      DOCXY_STORAGE__S3__PART_SIZE: '16MiB',
    },
  );
  assert.equal(c.storage.driver, 's3');
  assert.equal(c.storage.s3?.bucket, 'docxy');
  assert.equal(c.storage.s3.force_path_style, true);
  assert.equal(c.storage.s3.part_size, 16 * 1024 * 1024);
});
