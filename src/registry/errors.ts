/**
 * The one error table. Every error Docxy answers with is one of these codes, rendered as the OCI
 * distribution-spec error body `{"errors":[{"code","message","detail"}]}` (spec.md, "Error Codes").
 * The first block is the spec's own codes; UNAVAILABLE and UNKNOWN follow CNCF Distribution's
 * errcode package for gateway failures and internal errors.
 */
export const errorTable = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  TAG_INVALID: { status: 400, message: 'manifest tag did not match URI' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  NOT_FOUND: { status: 404, message: 'not found' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorTable;

/** An error that reaches the client as one OCI error entry. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  /** Extra response headers, e.g. `Retry-After` on TOOMANYREQUESTS. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    opts: { message?: string; status?: number; detail?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(opts.message ?? errorTable[code].message);
    this.name = 'RegistryError';
    this.code = code;
    this.status = opts.status ?? errorTable[code].status;
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
  }

  /** The JSON body the client receives. */
  toBody(): { errors: { code: ErrorCode; message: string; detail?: unknown }[] } {
    const entry: { code: ErrorCode; message: string; detail?: unknown } = {
      code: this.code,
      message: this.message,
    };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}
