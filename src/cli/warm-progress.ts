/**
 * `docxy warm`'s output: on a TTY one bar per image plus a total line (bytes, rate, ETA), redrawn
 * in place with ANSI cursor movement; otherwise one plain line per finished image and no escapes,
 * so logs and CI output stay readable.
 */
import { formatSize } from '../config/units.ts';

export interface ImageProgress {
  readonly label: string;
  total: number;
  done: number;
  state: 'waiting' | 'planning' | 'pulling' | 'done' | 'failed';
  detail: string;
}

export interface Progress {
  add(label: string): ImageProgress;
  /** Bytes arrived for an image (throttled redraw on a TTY). */
  tick(): void;
  /** The image finished (or failed): a plain line, or a redraw. */
  finished(p: ImageProgress, line: string): void;
  /** The last redraw, then the summary. */
  end(summary: string): void;
}

const BAR = 24;

function bar(done: number, total: number): string {
  const f = total <= 0 ? 0 : Math.min(1, done / total);
  const n = Math.round(f * BAR);
  return `[${'#'.repeat(n)}${'-'.repeat(BAR - n)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.ceil(seconds);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export function createProgress(
  write: (s: string) => void,
  tty: boolean,
  now: () => number = Date.now,
): Progress {
  const images: ImageProgress[] = [];
  const started = now();
  let drawnLines = 0;
  let lastDraw = 0;

  function draw(): void {
    lastDraw = now();
    const lines = images.map((p) => {
      const state =
        p.state === 'pulling' || p.state === 'done'
          ? `${bar(p.done, p.total)} ${formatSize(p.done)}/${formatSize(p.total)}`
          : p.state;
      return `${p.label}  ${state}${p.detail === '' ? '' : `  ${p.detail}`}`;
    });
    const done = images.reduce((a, p) => a + p.done, 0);
    const total = images.reduce((a, p) => a + p.total, 0);
    const secs = (now() - started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    lines.push(
      `total  ${bar(done, total)} ${formatSize(done)}/${formatSize(total)}  ${formatSize(Math.round(rate))}/s  ETA ${eta(rate > 0 ? (total - done) / rate : Number.NaN)}`,
    );
    // Back to the first line drawn last time, then each line cleared and rewritten.
    const up = drawnLines > 0 ? `\x1b[${drawnLines}A` : '';
    write(up + lines.map((l) => `\r\x1b[2K${l}\n`).join(''));
    drawnLines = lines.length;
  }

  return {
    add(label) {
      const p: ImageProgress = { label, total: 0, done: 0, state: 'waiting', detail: '' };
      images.push(p);
      if (tty) draw();
      return p;
    },
    tick() {
      if (tty && now() - lastDraw >= 100) draw();
    },
    finished(_p, line) {
      if (tty) draw();
      else write(`${line}\n`);
    },
    end(summary) {
      if (tty) draw();
      write(`${summary}\n`);
    },
  };
}
