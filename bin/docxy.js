#!/usr/bin/env node
// The installed entry point: runs the compiled CLI.
import { main } from '../dist/main.js';

main(process.argv).catch((err) => {
  process.stderr.write(`docxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
