/**
 * One upstream download per blob for a whole fleet (issue 12). A replica about to fill a blob
 * takes the lease `blob:<digest>` (its owner id and cluster address, renewed while the fill runs).
 * A replica that finds the lease held streams the blob from the holder's internal endpoint
 * (src/cluster/) instead: a fill of its own whose bytes come from the peer, hashed and verified
 * here too, spooled to a local file for its late joiners and never stored (the holder stores it).
 *
 * If the peer dies mid-transfer, the follower's fill breaks and resumes like any fill. Its resume
 * waits for the dead holder's lease to expire, takes the lease and asks the upstream for the rest
 * with a Range (so the fleet's upstream sees one GET plus one resume), or, when another replica
 * took over first, follows that one from where it is. A replica that took over stores the blob
 * after verifying it, copied from its spool. Redis unreachable: every lease is granted locally,
 * each replica fills alone (duplicate downloads, never wrong bytes).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { holdLease, type HeldLease, type LeaseOwner, type Leases } from '../coordination/coordination.ts';
import type { PeerClient } from '../cluster/peer-client.ts';
import { RegistryError } from '../registry/errors.ts';
import type { Digest } from '../registry/reference.ts';
import type { ObjectWriter, PartialReader, StorageDriver } from '../storage/driver.ts';
import { discard } from '../upstream/body.ts';
import { headerValue, type UpstreamResponse } from '../upstream/registry-client.ts';
import type { BlobFetcher } from './blob-fill.ts';
import type { Visibility } from './reply.ts';

export interface FleetFillDeps {
  readonly leases: Leases;
  /** This replica in leases: its id and its `cluster.advertise` address. */
  readonly owner: LeaseOwner;
  readonly ttlMs: number;
  readonly peers: PeerClient;
  /** The shared store (a replica that took a fill over stores the blob there). */
  readonly storage: StorageDriver;
  /** Local scratch for the bytes of fills that follow a peer (never committed). */
  readonly spool: StorageDriver;
  readonly log: Logger;
}

/** What a replica does about a cold blob. */
export type Claim =
  | { readonly kind: 'mine'; readonly lease: HeldLease }
  | { readonly kind: 'peer'; readonly holder: LeaseOwner; readonly response: UpstreamResponse }
  | { readonly kind: 'stored' }
  | { readonly kind: 'alone' };

/** The parts of a fill whose bytes come from a peer (see the file comment). */
export interface PeerFillParts {
  readonly writer: ObjectWriter;
  readonly reader: PartialReader;
  readonly visibility: Visibility;
  /** Resumes after a break: from the peer, from whoever took over, or by taking over. */
  readonly fetch: BlobFetcher;
  /** Call once when the fill ended: releases a lease taken over. */
  readonly ended: () => void;
  /** Whether this replica took the fill over from a peer that stopped. */
  readonly tookOver: () => boolean;
}

export interface FleetFills {
  /** Takes the fill lease of a cold blob, or finds whom to follow (or that it is stored by now). */
  claim(digest: Digest, key: string): Promise<Claim>;
  /** A spool and a resume fetcher for a fill that follows `holder` (see PeerFillParts). */
  peerFill(opts: {
    readonly digest: Digest;
    readonly key: string;
    readonly holder: LeaseOwner;
    readonly response: UpstreamResponse;
    /** The upstream, for a takeover. */
    readonly upstream: BlobFetcher;
  }): Promise<PeerFillParts>;
}

const leaseKey = (digest: Digest): string => `blob:${digest.value}`;
/** Tries of `claim` before filling alone (a holder that neither answers nor lets go: crashed). */
const claimTries = 3;
/** How often a follower whose peer stopped asks again for the lease or its new holder. */
const takeoverPollMs = 250;

/** A stored object's bytes from `start` on, as a resume response (a peer finished meanwhile). */
async function storedResponse(
  storage: StorageDriver,
  key: string,
  start: number,
): Promise<UpstreamResponse | undefined> {
  const info = await storage.stat(key).catch(() => undefined);
  if (info === undefined || start > info.size) return undefined;
  const body = await storage.get(key, { start, end: info.size }).catch(() => undefined);
  if (body === undefined) return undefined;
  return {
    status: 206,
    headers: {
      'content-range': `bytes ${String(start)}-${String(info.size - 1)}/${String(info.size)}`,
      'content-length': String(info.size - start),
    },
    body,
    url: `storage:${key}`,
  };
}

/** Copies a verified spool into the shared store under `key`; cancels the store's write on failure. */
async function publish(
  spool: ObjectWriter,
  storage: StorageDriver,
  key: string,
  visibility: Visibility,
): Promise<void> {
  const reader = await spool.openPartialReader();
  const out = await storage.createWriter(key, { metadata: { visibility } });
  try {
    for await (const chunk of reader.read(0, spool.written)) await out.write(chunk as Buffer);
    await out.commit();
  } catch (err) {
    await out.cancel();
    throw err;
  } finally {
    await reader.close();
  }
}

export function createFleetFills(deps: FleetFillDeps): FleetFills {
  const { leases, owner, ttlMs, peers, log } = deps;

  // A lost lease (expired while Redis was away, taken) does not stop a fill that is correct anyway:
  // another replica may duplicate the download, nobody gets wrong bytes.
  const hold = (key: string): HeldLease => holdLease(leases, key, owner.id, ttlMs);

  /** The peer's answer from `start`, if it is one a fill can take (the right status and a size). */
  async function fromPeer(
    holder: LeaseOwner,
    digest: Digest,
    start: number,
    signal?: AbortSignal,
  ): Promise<UpstreamResponse | undefined> {
    if (holder.address === '' || holder.id === owner.id) return undefined;
    let res: UpstreamResponse;
    try {
      res = await peers.fetch(holder.address, digest.value, start, signal);
    } catch (err) {
      log.debug(
        { digest: digest.value, peer: holder.address, err: (err as Error).message },
        'peer unreachable',
      );
      return undefined;
    }
    const ok = start === 0 ? res.status === 200 : res.status === 206;
    if (ok && headerValue(res.headers, 'content-length') !== undefined) return res;
    discard(res.body);
    return undefined;
  }

  return {
    async claim(digest, key) {
      for (let attempt = 0; attempt < claimTries; attempt++) {
        const grant = await leases.acquire(leaseKey(digest), owner, ttlMs);
        if (grant.granted) return { kind: 'mine', lease: hold(leaseKey(digest)) };
        const res = await fromPeer(grant.holder, digest, 0);
        if (res !== undefined) return { kind: 'peer', holder: grant.holder, response: res };
        // The holder is not filling it (any more): it may have just stored it.
        if ((await deps.storage.stat(key).catch(() => undefined)) !== undefined) return { kind: 'stored' };
        await sleep(200 * (attempt + 1));
      }
      log.warn(
        { digest: digest.value },
        'the fill lease is held by a replica that does not answer; filling alone',
      );
      return { kind: 'alone' };
    },

    async peerFill({ digest, key, holder, response, upstream }) {
      const scratch = await deps.spool.createWriter(key);
      let reader;
      try {
        reader = await scratch.openPartialReader();
      } catch (err) {
        await scratch.cancel();
        discard(response.body);
        throw err;
      }
      const visibility: Visibility =
        headerValue(response.headers, 'x-docxy-visibility') === 'private' ? 'private' : 'shared';
      let taken: HeldLease | undefined;
      let following = holder;
      const writer: ObjectWriter = {
        write: (chunk) => scratch.write(chunk),
        get written() {
          return scratch.written;
        },
        openPartialReader: () => scratch.openPartialReader(),
        async commit() {
          // The holder stores what it fills; only a replica that took over has to.
          try {
            if (taken !== undefined) await publish(scratch, deps.storage, key, visibility);
          } finally {
            await scratch.cancel();
          }
        },
        cancel: () => scratch.cancel(),
      };
      const fetch: BlobFetcher = async ({ start, signal }) => {
        if (taken !== undefined) return upstream({ start, ...(signal === undefined ? {} : { signal }) });
        // A dead holder's lease lives on for up to its TTL; past a few TTLs nobody will take over.
        const deadline = Date.now() + 3 * ttlMs + 5000;
        for (;;) {
          const grant = await leases.acquire(leaseKey(digest), owner, ttlMs);
          if (grant.granted) {
            taken = hold(leaseKey(digest));
            log.warn(
              { digest: digest.value, at: start, peer: following.address },
              'the replica filling this blob stopped; taking the fill over from the upstream',
            );
            return upstream({ start, ...(signal === undefined ? {} : { signal }) });
          }
          following = grant.holder;
          const res =
            (await fromPeer(following, digest, start, signal)) ??
            (await storedResponse(deps.storage, key, start));
          if (res !== undefined) return res;
          if (Date.now() > deadline) {
            throw new RegistryError('UNAVAILABLE', {
              status: 502,
              message: 'the replica filling this blob stopped and none took it over',
            });
          }
          await sleep(takeoverPollMs, undefined, signal === undefined ? {} : { signal });
        }
      };
      return {
        writer,
        reader,
        visibility,
        fetch,
        ended: () => void taken?.release(),
        tookOver: () => taken !== undefined,
      };
    },
  };
}
