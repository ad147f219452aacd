/** Runs the Docxy CLI from source (tests spawn it as its own process: SIGKILL, restart, RSS). */
import { main } from '../../src/main.ts';

main(process.argv).catch((err: unknown) => {
  process.stderr.write(`docxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
