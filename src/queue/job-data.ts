import { createHash } from 'node:crypto';

/** A shard job: the users of one shard of a batch between two uids (the rewards stay in PostgreSQL). */
export interface ChunkJobData {
  readonly kind: 'chunk';
  readonly batchId: string;
  readonly chunkNo: number;
  readonly shard: number;
}

/** A replay of one dead-letter entry. */
export interface ReplayJobData {
  readonly kind: 'replay';
  readonly deadLetterId: string;
  readonly batchId: string;
  readonly uid: string;
  readonly shard: number;
}

export type RewardJobData = ChunkJobData | ReplayJobData;

/** A short stable digest of a batch id, usable in BullMQ job ids (which may not contain ':'). */
export function batchKey(batchId: string): string {
  return createHash('sha256').update(batchId).digest('base64url').slice(0, 22);
}

/** Deterministic job id of a chunk: enqueueing the same chunk again while its job exists is a no-op. */
export function chunkJobId(batchId: string, chunkNo: number): string {
  return `c_${batchKey(batchId)}_${chunkNo}`;
}

/** Deterministic job id of a replay of a dead-letter entry. */
export function replayJobId(deadLetterId: string): string {
  return `r_${deadLetterId}`;
}

/** Job id of the dead-letter queue's mirror of an entry. */
export function deadLetterJobId(deadLetterId: string): string {
  return `dl_${deadLetterId}`;
}
