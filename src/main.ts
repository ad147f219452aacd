/** Process entry: argv -> command. */
import { Command } from 'commander';
import { configCheck, configPrint } from './cli/config-check.ts';
import { serve } from './cli/serve.ts';
import { version } from './version.ts';

interface ServeOpts {
  config?: string;
  listen?: string;
  publicUrl?: string;
  upstream?: string;
  logLevel?: string;
}

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
    .action(async (opts: ServeOpts) => {
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
  await program.parseAsync(argv);
}
