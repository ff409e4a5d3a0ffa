import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { seededRandom } from '../src/runtime/seeded-random.js';

/** The shape of a generated batch. */
export interface DatasetOptions {
  /** Rewards in the batch. */
  readonly rewards: number;
  /** Distinct users; reward n goes to user n mod users, so every user gets rewards/users of them (±1). */
  readonly users: number;
  /** Prefix of every rewardId and uid: a run never collides with another. */
  readonly tag: string;
  /** Users (the first ones) that also get `hotShare` of the rewards. Default 0. */
  readonly hotUsers?: number;
  /** Share of rewards given to the hot users (0..1). Default 0. */
  readonly hotShare?: number;
  /** Seed of the amounts and the hot picks. Default 1. */
  readonly seed?: number;
  /** One more user (`<tag>-big`) with this many rewards of its own, after the others. Default 0. */
  readonly bigUserRewards?: number;
}

/** A generated reward, as a producer sends it. */
export interface GeneratedReward {
  readonly rewardId: string;
  readonly uid: string;
  readonly amount: number;
  readonly description: string;
}

/** The seed's description: a realistic row carries a short non-ASCII text. */
export const DESCRIPTION = '活动奖励';

export function userId(tag: string, n: number): string {
  return `${tag}-u${n}`;
}

/** The rewards of a dataset, in file order (users interleaved, as campaign exports usually are). */
export function* generateRewards(options: DatasetOptions): Generator<GeneratedReward> {
  const next = seededRandom(options.seed ?? 1);
  const hot = options.hotUsers ?? 0;
  const hotShare = options.hotShare ?? 0;
  for (let n = 0; n < options.rewards; n += 1) {
    const user = hot > 0 && n >= options.users && next() < hotShare ? Math.floor(next() * hot) : n % options.users;
    yield {
      rewardId: `${options.tag}-r${n}`,
      uid: userId(options.tag, user),
      amount: 1 + Math.floor(next() * 1000),
      description: DESCRIPTION,
    };
  }
  for (let n = 0; n < (options.bigUserRewards ?? 0); n += 1) {
    yield {
      rewardId: `${options.tag}-big-r${n}`,
      uid: `${options.tag}-big`,
      amount: 1 + Math.floor(next() * 1000),
      description: DESCRIPTION,
    };
  }
}

/** Writes the dataset as JSON Lines; returns the number of rows written. */
export async function writeRewardFile(path: string, options: DatasetOptions): Promise<number> {
  const out = createWriteStream(path);
  let buffer = '';
  let rows = 0;
  for (const reward of generateRewards(options)) {
    buffer += `${JSON.stringify(reward)}\n`;
    rows += 1;
    if (buffer.length > 1 << 20) {
      if (!out.write(buffer)) await once(out, 'drain');
      buffer = '';
    }
  }
  out.end(buffer);
  await once(out, 'finish');
  return rows;
}
