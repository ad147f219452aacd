/** Everything Docxy holds for one upstream registry, built once by app.ts. */
import type { ListingService } from '../cache/listing-service.ts';
import type { ManifestService, UpstreamManifestFetch } from '../cache/manifest-service.ts';
import type { UpstreamBlobFetch } from '../cache/blob-service.ts';
import type { ResolvedUpstream } from '../config/upstreams.ts';
import type { RegistryClient } from './registry-client.ts';
import type { TokenRealmCache } from './token-realm.ts';

export interface UpstreamRuntime {
  /** The registry as clients name it (`docker.io`); keys logs and the cache. */
  readonly name: string;
  readonly config: ResolvedUpstream;
  readonly client: RegistryClient;
  readonly realms: TokenRealmCache;
  /** Path of Docxy's token endpoint for this upstream: `/auth/token` for the default one, else `/auth/token/<name>`. */
  readonly tokenPath: string;
  /** The manifest cache, when the cache is on. */
  readonly manifests?: ManifestService;
  /** The tags/list and referrers cache, when the cache is on. */
  readonly listings?: ListingService;
  /** Fetches a blob with Docxy's own identity (cache fills). */
  readonly fetchBlob: UpstreamBlobFetch;
  /** Fetches a manifest with Docxy's own identity. */
  readonly fetchManifest: UpstreamManifestFetch;
  close(): Promise<void>;
}
