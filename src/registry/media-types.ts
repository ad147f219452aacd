/** Manifest media types (OCI image-spec and Docker's image manifest v2 schema 2). */
export const mediaTypes = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

/** Registries commonly cap manifests at 4 MiB (Distribution's default, spec.md "Pushing Manifests"). */
export const maxManifestBytes = 4 * 1024 * 1024;
