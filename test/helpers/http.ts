/** A plain HTTP client for tests: no redirects followed, every header visible, body as bytes. */
import { request } from 'undici';

export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** First value of a header. */
  header(name: string): string | undefined;
  json(): unknown;
}

export async function httpGet(
  url: string,
  opts: {
    method?: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE' | 'PATCH';
    headers?: Record<string, string | string[]>;
    body?: string;
  } = {},
): Promise<TestResponse> {
  const res = await request(url, { method: opts.method ?? 'GET', headers: opts.headers, body: opts.body });
  const body = Buffer.from(await res.body.arrayBuffer());
  return {
    status: res.statusCode,
    headers: res.headers,
    body,
    header(name) {
      const v = res.headers[name.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    },
    json: () => JSON.parse(body.toString('utf8')) as unknown,
  };
}

/** Gets a pull token for `repo` through a realm (Docxy's /auth/token or the upstream's). */
export async function pullToken(
  realm: string,
  service: string,
  repo: string,
  authorization?: string,
): Promise<string> {
  const url = new URL(realm);
  url.searchParams.set('service', service);
  url.searchParams.set('scope', `repository:${repo}:pull`);
  const res = await httpGet(url.href, { headers: authorization === undefined ? {} : { authorization } });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.body.toString()}`);
  const json = res.json() as { token?: string };
  if (json.token === undefined) throw new Error('no token in response');
  return json.token;
}
