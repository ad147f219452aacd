/** Process entry: argv -> command. */
import { Command } from 'commander';
import { configCheck, configPrint } from './cli/config-check.ts';
import { serve } from './cli/serve.ts';
import { cacheGc, cacheLs, cacheRm } from './cli/cache.ts';
import { printClientConfig } from './cli/client-config.ts';
import { cacheStats } from './cli/cache-stats.ts';
import { serverUrl } from './cli/server-url.ts';
import { warmCommand } from './cli/warm-command.ts';
import { htpasswdAddCommand } from './cli/htpasswd.ts';
import { loadConfig, type Flags } from './config/load.ts';
import { createLogger } from './observability/logger.ts';

const write = (s: string): void => {
  process.stdout.write(s);
};
import { version } from './version.ts';

export async function main(argv: readonly string[]): Promise<void> {
  const program = new Command('docxy')
    .description('container-registry pull-through proxy and cache')
    .version(version);
  program
    .command('serve', { isDefault: true })
    .description('run the mirror')
    .option('-c, --config <file>', 'YAML configuration file (env DOCXY_CONFIG)')
    .option('--listen <host:port>', 'listen address (default 0.0.0.0:5000)')
    .option('--public-url <url>', 'URL clients reach Docxy at; realms and links are built from it')
    .option('--upstream <url>', 'upstream registry (default https://registry-1.docker.io)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .option('--data <dir>', 'data directory for the cache (default ./data)')
    .action(async (opts: Flags) => {
      await serve(opts);
    });
  const config = program.command('config').description('inspect configuration');
  config
    .command('check <file>')
    .description('validate a configuration file; problems name the key path')
    .action((file: string) => {
      process.exitCode = configCheck(file, (s) => process.stdout.write(s));
    });
  config
    .command('print')
    .description('print the effective configuration (file < DOCXY_* env < flags)')
    .option('-c, --config <file>', 'YAML configuration file')
    .action((opts: { config?: string }) => {
      configPrint(opts, (s) => process.stdout.write(s));
    });
  const cache = program.command('cache').description('inspect and trim the cache');
  const cacheOpts = (c: Command): Command =>
    c
      .option('-c, --config <file>', 'YAML configuration file')
      .option('--data <dir>', 'data directory (default ./data)');
  cacheOpts(
    cache.command('ls').description('cached repositories and tags with sizes and last access'),
  ).action(async (opts: { config?: string; data?: string }) => {
    await cacheLs(loadConfig(opts), write);
  });
  cacheOpts(
    cache.command('gc').description('evict least recently used objects down to cache.max_size now'),
  ).action(async (opts: { config?: string; data?: string }) => {
    const config = loadConfig(opts);
    process.exitCode = await cacheGc(config, createLogger(config.log_level), write);
  });
  cacheOpts(cache.command('rm <ref>').description('remove name or name:tag, and what only it uses')).action(
    async (ref: string, opts: { config?: string; data?: string }) => {
      process.exitCode = await cacheRm(loadConfig(opts), ref, write);
    },
  );
  cacheOpts(
    cache
      .command('stats')
      .description("a running Docxy's /-/api/stats, or the data directory's contents offline")
      .option('--server <url>', 'the Docxy to ask (default: public_url, else the listen address)')
      .option('--offline', 'read the data directory even if a server answers')
      .option('--json', 'one JSON object instead of text'),
  ).action(
    async (opts: { config?: string; data?: string; server?: string; offline?: boolean; json?: boolean }) => {
      const config = loadConfig({ config: opts.config, data: opts.data });
      process.exitCode = await cacheStats(
        config,
        {
          server: opts.server ?? serverUrl(config),
          offline: opts.offline === true,
          json: opts.json === true,
        },
        write,
        (s) => process.stderr.write(s),
      );
    },
  );
  warmCommand(program);
  program
    .command('htpasswd')
    .description('manage an htpasswd file (bcrypt, as htpasswd -B writes)')
    .command('add <file> <user>')
    .description('add or replace a user; the password is read from standard input')
    .action(async (file: string, user: string) => {
      process.exitCode = await htpasswdAddCommand(file, user, write);
    });
  program
    .command('client-config')
    .description('print docker, containerd, podman and k3s snippets that point at this Docxy')
    .option('-c, --config <file>', 'YAML configuration file')
    .option(
      '--public-url <url>',
      'the URL clients reach Docxy at (default: public_url, else the listen address)',
    )
    .option('--upstream <name...>', 'only these upstreams (default: all)')
    .action((opts: { config?: string; publicUrl?: string; upstream?: string[] }) => {
      const config = loadConfig({ config: opts.config, publicUrl: opts.publicUrl });
      process.exitCode = printClientConfig(config, serverUrl(config), opts.upstream ?? [], write);
    });
  await program.parseAsync(argv);
}
