/**
 * Most distinct users whose reward counts the planner keeps (about 25 MB); a bigger batch is planned by PostgreSQL
 * from the staged rows instead ({@link PLAN_CHUNKS_SQL}).
 */
const MAX_PLANNED_USERS = 300_000;

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
 * Records chunks planned by {@link ChunkPlanner}: `$1` batch id, then one array per column; the users of all chunks
 * in `$8` (uids) and `$9` (their reward counts), chunk n's from position `$10[n]` to `$11[n]` (1-based, inclusive).
 */
export const INSERT_PLANNED_CHUNKS_SQL = `
insert into reward_chunks (batch_id, chunk_no, shard, first_uid, last_uid, users, rewards, uids, user_rewards)
select $1, c.chunk_no, c.shard, c.first_uid, c.last_uid, c.users, c.rewards, ($8::text[])[c.lo:c.hi], ($9::int[])[c.lo:c.hi]
from unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::int[], $7::int[], $10::int[], $11::int[])
  as c(chunk_no, shard, first_uid, last_uid, users, rewards, lo, hi)`;

/** The parameters of {@link INSERT_PLANNED_CHUNKS_SQL} for `chunks` of batch `batchId`. */
export function plannedChunkParameters(batchId: string, chunks: readonly PlannedChunk[]): unknown[] {
  const uids: string[] = [];
  const userRewards: number[] = [];
  const from: number[] = [];
  const to: number[] = [];
  for (const chunk of chunks) {
    from.push(uids.length + 1);
    for (let i = 0; i < chunk.uids.length; i += 1) {
      uids.push(chunk.uids[i]!);
      userRewards.push(chunk.userRewards[i]!);
    }
    to.push(uids.length);
  }
  return [
    batchId,
    chunks.map((chunk) => chunk.chunkNo),
    chunks.map((chunk) => chunk.shard),
    chunks.map((chunk) => chunk.firstUid),
    chunks.map((chunk) => chunk.lastUid),
    chunks.map((chunk) => chunk.users),
    chunks.map((chunk) => chunk.rewards),
    uids,
    userRewards,
    from,
    to,
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
 * {@link MAX_PLANNED_USERS} users it gives up (`planned` false) and the caller plans in SQL.
 */
export class ChunkPlanner {
  private counts: Map<string, number>[];
  private users = 0;
  private gaveUp = false;

  constructor(shards: number) {
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
    if (this.users >= MAX_PLANNED_USERS) {
      this.gaveUp = true;
      this.counts = [];
      return;
    }
    // a uid cut out of a line keeps the whole text it was read from alive: keep a copy of its own
    counts.set((' ' + uid).slice(1), 1);
    this.users += 1;
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
        chunks.push({ chunkNo: chunks.length, shard, firstUid: members[0]!, lastUid: members[members.length - 1]!, users: members.length, rewards, uids: members, userRewards });
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
