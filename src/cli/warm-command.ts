/** Registers `docxy warm` on the program; usage errors exit 2 like the command's own checks. */
import { text } from 'node:stream/consumers';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { serverUrl } from './server-url.ts';
import { warm } from './warm.ts';

interface WarmFlags {
  config?: string;
  file?: string;
  platform?: string;
  allPlatforms?: boolean;
  concurrency?: string;
  server?: string;
  user?: string;
  passwordStdin?: boolean;
}

export function warmCommand(program: Command): void {
  program
    .command('warm [image...]')
    .description('prefetch images into a running Docxy by pulling them through it')
    .option('-c, --config <file>', 'YAML configuration file (for the default server URL)')
    .option('--file <file>', 'more images, one a line (# starts a comment)')
    .option('--platform <list>', 'os/arch[/variant],… of a multi-platform image (default: linux/<host arch>)')
    .option('--all-platforms', 'every platform of a multi-platform image')
    .option('--concurrency <n>', 'images warmed at a time (default 3)')
    .option('--server <url>', 'the Docxy to warm (default: public_url, else the listen address)')
    .option('--user <user>', "a user for Docxy's token realm")
    .option('--password-stdin', "read the user's password from standard input")
    .exitOverride((e) => {
      process.exit(e.exitCode === 0 ? 0 : 2);
    })
    .action(async (images: string[], opts: WarmFlags) => {
      const config = loadConfig({ config: opts.config });
      const up = config.upstreams.find((u) => u.name === config.defaultUpstream);
      const password =
        opts.passwordStdin === true ? (await text(process.stdin)).replace(/\r?\n$/, '') : undefined;
      process.exitCode = await warm({
        images,
        file: opts.file,
        platform: opts.platform,
        allPlatforms: opts.allPlatforms,
        concurrency: opts.concurrency,
        server: (opts.server ?? serverUrl(config)).replace(/\/+$/, ''),
        user: opts.user,
        password,
        libraryPrefix: up?.libraryPrefix ?? true,
        tty: process.stdout.isTTY,
        out: (s) => process.stdout.write(s),
        err: (s) => process.stderr.write(s),
      });
    });
}
