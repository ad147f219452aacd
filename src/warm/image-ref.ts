/**
 * Image references the way docker resolves them: `alpine:3.20` is the default upstream's
 * library/alpine, `docker.io/x` is plain `x`, `ghcr.io/owner/app:1` keeps its host-like first
 * component, which Docxy's router maps to an upstream by prefix (or refuses).
 */
import { isValidName, isValidTag } from '../registry/reference.ts';
import { withLibraryPrefix } from '../routing/library-prefix.ts';
import type { WarmTarget } from './warm-plan.ts';

/** Docker's names for the default registry: `docker.io/alpine` is plain `alpine`. */
const HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `alpine:3.20`, `ghcr.io/o/a:1`, `name@sha256:…` -> what to ask Docxy for, or undefined. */
export function parseImage(ref: string, libraryPrefix: boolean): WarmTarget | undefined {
  let name = ref;
  let reference = 'latest';
  const at = ref.indexOf('@');
  if (at >= 0) {
    name = ref.slice(0, at);
    reference = ref.slice(at + 1);
    if (!/^sha256:[a-f0-9]{64}$/.test(reference)) return undefined;
  } else {
    const colon = ref.lastIndexOf(':');
    if (colon > ref.lastIndexOf('/')) {
      name = ref.slice(0, colon);
      reference = ref.slice(colon + 1);
      if (!isValidTag(reference)) return undefined;
    }
  }
  const slash = name.indexOf('/');
  if (slash > 0 && HUB_HOSTS.has(name.slice(0, slash))) name = name.slice(slash + 1);
  // A host-like first component stays: Docxy routes it by prefix (or refuses an unknown one).
  const first = name.slice(0, Math.max(0, name.indexOf('/')));
  const hostLike = first.includes('.') || first.includes(':') || first === 'localhost';
  const checked = hostLike ? name.slice(first.length + 1) : name;
  if (!isValidName(checked)) return undefined;
  return { name: hostLike ? name : withLibraryPrefix(name, libraryPrefix), reference };
}
