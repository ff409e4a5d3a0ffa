import { createHash } from 'node:crypto';
import type { Reward } from '../rewards/reward.js';
import { mix32 } from './hash-mix.js';

/**
 * The content digest of a batch (`reward_batches.content_digest`): what "the same rewards" means when a batchId is
 * enqueued again (ADR 0005). A batch is a SET of rewards: the order of rows does not matter; rewardId, uid, amount
 * and description all do (an absent and an empty description are the same). Digests are computed while streaming,
 * in constant memory.
 */
export interface ContentDigest {
  /** Adds one valid reward. */
  add(reward: Reward): void;
  /** The digest of the rewards added so far, in the format of the stored digest it is compared with. */
  value(): string;
}

/** Prefix of the current digest format. Digests without it were stored before it and are order-dependent. */
const SET_DIGEST_PREFIX = 'v2:';

/** One reward as the digests read it: its four values, NUL-separated (no value can contain NUL). */
function rowText(reward: Reward): string {
  return `${reward.rewardId}\u0000${reward.uid}\u0000${reward.amount}\u0000${reward.description ?? ''}`;
}

/** Odd multipliers of the four lanes of the row hash (FNV-1a's prime, then murmur's constants). */
const LANE_MULTIPLIERS = [0x01000193, 0x5bd1e995, 0xcc9e2d51, 0x1b873593] as const;
/** Start values of the four lanes (FNV-1a's offset basis, then arbitrary distinct constants). */
const LANE_SEEDS = [0x811c9dc5, 0x9747b28c, 0x2f8a5b3d, 0x6c1e4f97] as const;

/**
 * The order-independent digest (`v2:` + 64 hex digits). Each reward gets a 128-bit hash (four 32-bit lanes of
 * xor-multiply steps over its UTF-16 code units, each finished by murmur3's finalizer); the hashes are summed lane
 * by lane modulo 2^32 (a multiset hash: any order of the same rows gives the same sum), and the digest is the
 * SHA-256 of the sums and the number of rewards. A change to one value of one row always changes the sum (every
 * step is a bijection); other differences go unnoticed with a chance of about 2^-128. It is not meant to resist a
 * producer crafting a different batch with the same digest on purpose: such a batch would only be taken for a
 * repeat and ignored, never credited. (A SHA-256 per row cost 1.5–3.4 µs of CPU per reward in the whole
 * enqueue, 14–39 % more; this hash costs under 0.1 µs there: ADR 0005.)
 */
export class SetDigest implements ContentDigest {
  private readonly lanes = new Uint32Array(4);
  private count = 0;

  add(reward: Reward): void {
    const text = rowText(reward);
    let h0: number = LANE_SEEDS[0];
    let h1: number = LANE_SEEDS[1];
    let h2: number = LANE_SEEDS[2];
    let h3: number = LANE_SEEDS[3];
    for (let at = 0; at < text.length; at += 1) {
      const unit = text.charCodeAt(at);
      h0 = Math.imul(h0 ^ unit, LANE_MULTIPLIERS[0]);
      h1 = Math.imul(h1 ^ unit, LANE_MULTIPLIERS[1]);
      h2 = Math.imul(h2 ^ unit, LANE_MULTIPLIERS[2]);
      h3 = Math.imul(h3 ^ unit, LANE_MULTIPLIERS[3]);
    }
    const lanes = this.lanes;
    lanes[0] = lanes[0]! + mix32(h0 ^ text.length);
    lanes[1] = lanes[1]! + mix32(h1 ^ text.length);
    lanes[2] = lanes[2]! + mix32(h2 ^ text.length);
    lanes[3] = lanes[3]! + mix32(h3 ^ text.length);
    this.count += 1;
  }

  value(): string {
    const sums = [...this.lanes].map((lane) => lane.toString(16).padStart(8, '0')).join('');
    return `${SET_DIGEST_PREFIX}${createHash('sha256').update(`windfall-batch-set\u0000${this.count}\u0000${sums}`).digest('hex')}`;
  }
}

/**
 * The digest batches were recorded with before `v2:` (64 hex digits, no prefix): the SHA-256 of the rows in their
 * order, each as its four values and a newline. Kept to compare a batch recorded then with a new input: for those
 * batches only the same rows in the same order are the same content.
 */
export class SequenceDigest implements ContentDigest {
  private readonly hasher = createHash('sha256');
  private pending = '';

  add(reward: Reward): void {
    this.pending += `${rowText(reward)}\n`;
    if (this.pending.length > 60_000) {
      this.hasher.update(this.pending);
      this.pending = '';
    }
  }

  value(): string {
    return this.hasher.copy().update(this.pending).digest('hex');
  }
}

/** True when `stored` is in the format before `v2:` (order-dependent). */
export function isSequenceDigest(stored: string): boolean {
  return !stored.startsWith(SET_DIGEST_PREFIX);
}

/** A digest of the same format as `stored`, to compare a new input with it. */
export function digestComparableWith(stored: string): ContentDigest {
  return isSequenceDigest(stored) ? new SequenceDigest() : new SetDigest();
}
