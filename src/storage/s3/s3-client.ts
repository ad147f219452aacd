/**
 * Builds the S3 client with bounded timeouts and few retries, so an unreachable object store
 * fails a request within seconds (a 503 to the client) instead of hanging it.
 */
import { S3Client } from '@aws-sdk/client-s3';

export interface S3ClientOptions {
  /** `https://host:port` of an S3-compatible store; undefined for AWS itself. */
  readonly endpoint?: string;
  readonly region: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most non-AWS stores. */
  readonly forcePathStyle: boolean;
  /** Static keys; undefined for the AWS default chain (environment, profile, instance role). */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Milliseconds to establish a connection. */
  readonly connectTimeoutMs: number;
  /** Milliseconds a request may sit without progress. */
  readonly requestTimeoutMs: number;
  /** Attempts per operation, the first included. */
  readonly maxAttempts: number;
}

export function createS3Client(o: S3ClientOptions): S3Client {
  return new S3Client({
    ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
    region: o.region,
    forcePathStyle: o.forcePathStyle,
    ...(o.credentials === undefined ? {} : { credentials: o.credentials }),
    maxAttempts: o.maxAttempts,
    requestHandler: {
      connectionTimeout: o.connectTimeoutMs,
      // Without throwOnRequestTimeout the SDK only logs a warning and the request hangs on; the
      // socket timeout covers a body that stalls after its headers arrived.
      requestTimeout: o.requestTimeoutMs,
      throwOnRequestTimeout: true,
      socketTimeout: o.requestTimeoutMs,
    },
  });
}
