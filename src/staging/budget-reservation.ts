import type pg from 'pg';

/** A batch whose total does not fit in what remains of its campaign's budget; nothing of it was recorded. */
export class BudgetExceededError extends Error {
  override readonly name = 'BudgetExceededError';
  constructor(
    readonly campaignId: string,
    readonly batchId: string,
    /** The batch's total (minor units). */
    readonly requested: bigint,
    /** What remained of the budget (minor units; negative once the budget was lowered below what is reserved). */
    readonly remaining: bigint,
    /** The campaign's budget. */
    readonly budget: bigint,
  ) {
    super(
      `batch ${JSON.stringify(batchId)} refused: its total ${requested} exceeds the remaining budget ${remaining} of campaign ${JSON.stringify(campaignId)} ` +
        `(budget ${budget}; a budget of at least ${budget - remaining + requested} would fit it). Nothing was recorded. ` +
        `Raise the budget (\`windfall campaign set ${campaignId} --budget AMOUNT\`, or PUT /v1/campaigns/${encodeURIComponent(campaignId)}) or split the batch.`,
    );
  }
}

/**
 * What a campaign's batches hold of its budget, other than batch `exceptBatchId`: a batch's total while it may still
 * pay; once reverted, what it paid and kept (credits less the revert's debits).
 */
const RESERVED_SQL = `
select coalesce(sum(
  case when b.status in ('reverted', 'partially_reverted') then
    (select coalesce(sum(l.amount), 0) from ledger_entries l
      where l.batch_id = b.batch_id and (l.kind = 'reward' or (l.kind = 'debit' and l.operation_id like 'revert:%')))
  else coalesce(b.amount_total, 0) end), 0)::text as reserved
from reward_batches b
where b.campaign_id = $1 and b.batch_id <> $2`;

/**
 * Reserves `amount` of campaign `campaignId`'s budget for batch `batchId`, inside the transaction that records the
 * batch (`client` must be in it, and the batch row must carry the campaign id). Serialized per campaign by a lock
 * on the campaign's row, held until that transaction ends: two batches that each fit alone but not together never
 * both pass. A campaign first named here is created without a budget (unlimited).
 * @throws {@link BudgetExceededError} when the amount does not fit; roll the transaction back then.
 */
export async function reserveBudget(
  client: pg.PoolClient,
  campaignId: string,
  batchId: string,
  amount: bigint,
): Promise<void> {
  await client.query('insert into campaigns (campaign_id) values ($1) on conflict (campaign_id) do nothing', [
    campaignId,
  ]);
  // the lock first, then the sum in a statement of its own: its snapshot then sees every batch committed before
  const { rows } = await client.query<{ budget: string | null }>(
    'select budget::text as budget from campaigns where campaign_id = $1 for no key update',
    [campaignId],
  );
  const budget = rows[0]?.budget ?? null;
  if (budget === null) return;
  const reserved = await reservedOf(client, campaignId, batchId);
  const remaining = BigInt(budget) - reserved;
  if (amount > remaining) throw new BudgetExceededError(campaignId, batchId, amount, remaining, BigInt(budget));
}

/** What campaign `campaignId`'s batches other than `exceptBatchId` hold of its budget (see {@link RESERVED_SQL}). */
export async function reservedOf(db: Pick<pg.Pool, 'query'>, campaignId: string, exceptBatchId = ''): Promise<bigint> {
  const { rows } = await db.query<{ reserved: string }>(RESERVED_SQL, [campaignId, exceptBatchId]);
  return BigInt(rows[0]!.reserved);
}
