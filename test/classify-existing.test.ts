import { describe, expect, it } from 'vitest';
import { classifyExisting, classifyExistingSql, type ExistingEntry } from '../src/ledger/ledger-operation.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** An operation (user, amount, batch) and the ledger entry its id already has. */
interface Case {
  readonly uid: string;
  readonly amount: bigint;
  readonly batchId: string | null;
  readonly existing: ExistingEntry;
}

/** Every combination of same/other user, amount and batch, null batch ids on either side included. */
function cases(): Case[] {
  const all: Case[] = [];
  for (const uid of ['u1', 'u2'])
    for (const amount of [100n, 250n])
      for (const batchId of ['b1', 'b2', null])
        for (const existingBatch of ['b1', null])
          all.push({ uid, amount, batchId, existing: { uid: 'u1', amount: 100n, batchId: existingBatch } });
  return all;
}

describe('the duplicate/conflict rule (classifyExisting and its SQL, classifyExistingSql)', () => {
  it('answers the same for every combination of user, amount and batch, in TypeScript and in PostgreSQL', async () => {
    const all = cases();
    const { rows } = await env.pool.query<{ at: string; outcome: string }>(
      `select x.at, ${classifyExistingSql('l', 'x')} as outcome
       from unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[])
              with ordinality as t(uid, amount, batch_id, l_uid, l_amount, l_batch, at)
       cross join lateral (select t.uid, t.amount, t.batch_id, t.at) as x
       cross join lateral (select t.l_uid as uid, t.l_amount as amount, t.l_batch as batch_id) as l
       order by x.at`,
      [
        all.map((c) => c.uid),
        all.map((c) => c.amount.toString()),
        all.map((c) => c.batchId),
        all.map((c) => c.existing.uid),
        all.map((c) => c.existing.amount.toString()),
        all.map((c) => c.existing.batchId),
      ],
    );
    const inSql = rows.map((row) => row.outcome);
    const inTypeScript = all.map((c) => classifyExisting(c.uid, c.amount, c.batchId, c.existing));
    expect(inSql).toEqual(inTypeScript);
    // the rule's three answers all occur, so the comparison means something
    expect(new Set(inTypeScript)).toEqual(new Set(['already_applied', 'duplicate', 'conflict']));
  });
});
