import type { Config } from '../config/load.ts';

/** The URL a local client reaches this configuration's Docxy at: public_url, else the listen address. */
export function serverUrl(config: Config): string {
  return (
    config.public_url ?? `http://${config.listen.replace(/^0\.0\.0\.0:|^\[::\]:/, '127.0.0.1:')}`
  ).replace(/\/+$/, '');
}
