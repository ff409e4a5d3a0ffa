/**
 * Most memory the planner's counts may take by default (an estimate: each user's uid, in UTF-16, plus its map entry);
 * a batch with more users is planned by PostgreSQL from the staged rows instead ({@link PLAN_CHUNKS_SQL}). About
 * 300,000 users of 20-character uids, 110,000 of 120 characters.
 */
export const DEFAULT_PLANNED_BYTES = 32 * 1024 * 1024;
/** Estimated bytes of one counted user besides its uid's characters. */
const BYTES_PER_USER = 64;

/** One shard job of a batch: the users of one shard from `firstUid` to `lastUid` ("C" order). */
export interface PlannedChunk {
  readonly chunkNo: number;
  readonly shard: number;
  readonly firstUid: string;
  readonly lastUid: string;
  readonly users: number;
  readonly rewards: number;
  /** The chunk's users, in "C" order. */
  readonly uids: readonly string[];
  /** Rewards of each of `uids`. */
  readonly userRewards: readonly number[];
}

/**
 * Cuts a batch into chunks in SQL, from its staged rows: the users of each shard in uid order ("C"), a chunk starting
 * wherever the rewards of the users before it in the shard reach the next multiple of `$2`, so a user is never split.
 * `$1` batch id, `$2` rewards per chunk.
 */
export const PLAN_CHUNKS_SQL = `
insert into reward_chunks (batch_id, chunk_no, shard, first_uid, last_uid, users, rewards)
with users as (
  select shard, uid, count(*) as n from reward_batch_items where batch_id = $1 group by shard, uid
), placed as (
  select shard, uid, n,
         floor(coalesce(sum(n) over (partition by shard order by uid rows between unbounded preceding and 1 preceding), 0) / $2)::int as local_chunk
  from users
)
select $1, (row_number() over (order by shard, local_chunk))::int - 1, shard, min(uid), max(uid), count(*)::int, sum(n)::int
from placed group by shard, local_chunk`;

/**
 * Records chunks planned by {@link ChunkPlanner}: `$1` batch id, then one array per column; the users of all chunks,
 * in order, as `$8` (each one's chunk number), `$9` (uids) and `$10` (reward counts). (Grouped, not sliced: slicing
 * one long array per chunk costs chunks × users.)
 */
export const INSERT_PLANNED_CHUNKS_SQL = `
insert into reward_chunks (batch_id, chunk_no, shard, first_uid, last_uid, users, rewards, uids, user_rewards)
select $1, c.chunk_no, c.shard, c.first_uid, c.last_uid, c.users, c.rewards, u.uids, u.user_rewards
from unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::int[], $7::int[]) as c(chunk_no, shard, first_uid, last_uid, users, rewards)
join (
  select chunk_no, array_agg(uid order by at) as uids, array_agg(n order by at) as user_rewards
  from unnest($8::int[], $9::text[], $10::int[]) with ordinality as x(chunk_no, uid, n, at)
  group by chunk_no
) u on u.chunk_no = c.chunk_no`;

/** The parameters of {@link INSERT_PLANNED_CHUNKS_SQL} for `chunks` of batch `batchId`. */
export function plannedChunkParameters(batchId: string, chunks: readonly PlannedChunk[]): unknown[] {
  const chunkOf: number[] = [];
  const uids: string[] = [];
  const userRewards: number[] = [];
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.uids.length; i += 1) {
      chunkOf.push(chunk.chunkNo);
      uids.push(chunk.uids[i]!);
      userRewards.push(chunk.userRewards[i]!);
    }
  }
  return [
    batchId,
    chunks.map((chunk) => chunk.chunkNo),
    chunks.map((chunk) => chunk.shard),
    chunks.map((chunk) => chunk.firstUid),
    chunks.map((chunk) => chunk.lastUid),
    chunks.map((chunk) => chunk.users),
    chunks.map((chunk) => chunk.rewards),
    chunkOf,
    uids,
    userRewards,
  ];
}

const SURROGATE = /[\ud800-\udfff]/;

/** Orders strings as PostgreSQL's "C" collation does (by UTF-8 bytes, which is by code point). */
export function compareC(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(j)!;
    if (x !== y) return x < y ? -1 : 1;
    i += x > 0xffff ? 2 : 1;
    j += y > 0xffff ? 2 : 1;
  }
  return a.length - i - (b.length - j);
}

/**
 * The chunk plan of a batch, counted while its rows are read, so that recording the batch needs no pass over the
 * staged rows: the same cut as {@link PLAN_CHUNKS_SQL}. Keeps one count per user and shard; past
 * its `maxBytes` it gives up (`planned` false) and the caller plans in SQL.
 */
export class ChunkPlanner {
  private counts: Map<string, number>[];
  private bytes = 0;
  private gaveUp = false;

  /** @param maxBytes most memory the counts may take (estimated), default {@link DEFAULT_PLANNED_BYTES} */
  constructor(
    shards: number,
    private readonly maxBytes: number = DEFAULT_PLANNED_BYTES,
  ) {
    this.counts = Array.from({ length: shards }, () => new Map<string, number>());
  }

  /** False once the batch had too many users to plan here. */
  get planned(): boolean {
    return !this.gaveUp;
  }

  /** Counts one reward of `uid` (in shard `shard`). */
  add(shard: number, uid: string): void {
    if (this.gaveUp) return;
    const counts = this.counts[shard]!;
    const n = counts.get(uid);
    if (n !== undefined) {
      counts.set(uid, n + 1);
      return;
    }
    this.bytes += 2 * uid.length + BYTES_PER_USER;
    if (this.bytes > this.maxBytes) {
      this.gaveUp = true;
      this.counts = [];
      return;
    }
    // a uid cut out of a line keeps the whole text it was read from alive: keep a copy of its own
    counts.set((' ' + uid).slice(1), 1);
  }

  /** The chunks of the batch, numbered by shard, then by uid. */
  plan(chunkSize: number): PlannedChunk[] {
    if (this.gaveUp) throw new Error('internal: the chunk plan was given up (too many users); plan in SQL');
    const chunks: PlannedChunk[] = [];
    this.counts.forEach((counts, shard) => {
      const uids = [...counts.keys()];
      // UTF-16 order is code point order unless a surrogate pair is involved
      uids.sort(uids.some((uid) => SURROGATE.test(uid)) ? compareC : undefined);
      let before = 0;
      let current: { local: number; uids: string[]; userRewards: number[]; rewards: number } | undefined;
      const close = (chunk: NonNullable<typeof current>): void => {
        const { uids: members, userRewards, rewards } = chunk;
        chunks.push({
          chunkNo: chunks.length,
          shard,
          firstUid: members[0]!,
          lastUid: members[members.length - 1]!,
          users: members.length,
          rewards,
          uids: members,
          userRewards,
        });
      };
      for (const uid of uids) {
        const n = counts.get(uid)!;
        const local = Math.floor(before / chunkSize);
        if (current?.local !== local) {
          if (current) close(current);
          current = { local, uids: [], userRewards: [], rewards: 0 };
        }
        current.uids.push(uid);
        current.userRewards.push(n);
        current.rewards += n;
        before += n;
      }
      if (current) close(current);
    });
    return chunks;
  }
}
