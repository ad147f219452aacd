/**
 * fastify gives every request its own child logger (`request.log`, bound to the request id). pino
 * builds a child by serialising its bindings through the redactor, ~3 % of a warm manifest
 * request's CPU (issue 14), yet almost no request logs through it: Docxy writes its request line
 * itself (server.ts) and `request.log` only carries the rare audit warning or internal error.
 * This child is created on its first use instead, with the same bindings and options, so its
 * lines are exactly those of pino's child.
 */
import type { FastifyBaseLogger } from 'fastify';

type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>;
const levelMethods = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LevelMethod = (typeof levelMethods)[number];

/** Methods on the prototype, so a request that never logs costs one small object. */
class LazyChildLogger implements FastifyBaseLogger {
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Bindings;
  readonly #opts: ChildOptions;
  #child: FastifyBaseLogger | undefined;
  declare readonly fatal: FastifyBaseLogger['fatal'];
  declare readonly error: FastifyBaseLogger['error'];
  declare readonly warn: FastifyBaseLogger['warn'];
  declare readonly info: FastifyBaseLogger['info'];
  declare readonly debug: FastifyBaseLogger['debug'];
  declare readonly trace: FastifyBaseLogger['trace'];
  declare readonly silent: FastifyBaseLogger['silent'];

  static {
    // One forwarder per level, on the prototype.
    for (const method of levelMethods) {
      Object.defineProperty(LazyChildLogger.prototype, method, {
        value(this: LazyChildLogger, ...args: unknown[]): void {
          this.#forward(method, args);
        },
      });
    }
  }

  constructor(parent: FastifyBaseLogger, bindings: Bindings, opts: ChildOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#opts = opts;
  }

  #real(): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#opts);
    return this.#child;
  }

  #forward(method: LevelMethod, args: unknown[]): void {
    // Called on the child itself (pino's methods need it as `this`), arguments passed on untouched.
    const real = this.#real();
    Reflect.apply(real[method], real, args);
  }

  get level(): FastifyBaseLogger['level'] {
    return (this.#child ?? this.#parent).level;
  }

  set level(level: FastifyBaseLogger['level']) {
    this.#real().level = level;
  }

  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.#real().child(bindings, options);
  }
}

/** fastify's `childLoggerFactory`: the per-request child, created when first used. */
export function lazyChildLogger(
  parent: FastifyBaseLogger,
  bindings: Bindings,
  opts: ChildOptions,
): FastifyBaseLogger {
  return new LazyChildLogger(parent, bindings, opts);
}
