/**
 * `docxy serve`: load the configuration, start the app; SIGHUP reloads the certificate (and checks
 * ACME renewal); SIGTERM/SIGINT stop accepting, let running transfers finish for up to
 * `shutdown_timeout`, then exit 0.
 */
import { createApp } from '../app.ts';
import { loadConfig, type Flags } from '../config/load.ts';
import { startHeapGovernor } from '../heap-governor.ts';
import { reexecForMemory } from '../memory-tuning.ts';
import { createLogger } from '../observability/logger.ts';

export async function serve(flags: Flags): Promise<void> {
  const config = loadConfig(flags);
  // Before anything starts: when the memory settings need a re-exec, this call does not return.
  const notTuned = reexecForMemory(config.memory);
  const log = createLogger(config.log_level);
  if (notTuned !== undefined) log.warn(notTuned);
  const app = createApp(config, log);
  await app.listen();
  const governor =
    config.memory.heap_target > 0
      ? startHeapGovernor({ targetBytes: config.memory.heap_target, log: log.child({ module: 'memory' }) })
      : undefined;
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading TLS certificate');
    app.reloadTls();
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(
      { signal, boundMs: config.shutdown_timeout },
      'shutting down: no new connections; running transfers may finish',
    );
    const bound = setTimeout(() => {
      log.warn('shutdown bound reached; closing what is left');
      process.exit(0);
    }, config.shutdown_timeout);
    bound.unref();
    governor?.stop();
    app.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.once('SIGINT', () => {
    stop('SIGINT');
  });
}
