/** `docxy serve`: load the configuration, start the app, stop cleanly on SIGTERM/SIGINT. */
import { createApp } from '../app.ts';
import { loadConfig, type Flags } from '../config/load.ts';
import { createLogger } from '../observability/logger.ts';

export async function serve(flags: Flags): Promise<void> {
  const config = loadConfig(flags);
  const log = createLogger(config.log_level);
  const app = createApp(config, log);
  await app.listen();
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
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
