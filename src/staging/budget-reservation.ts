import type pg from 'pg';
import { WindfallError } from '../errors/windfall-error.js';
import type { Queryable } from '../db/queryable.js';

/** A batch whose total does not fit in what remains of its campaign's budget; nothing of it was recorded. */
export class BudgetExceededError extends WindfallError {
  static override readonly code = 'BUDGET_EXCEEDED';
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

  /** The campaign, and what remained of its budget (a string of digits), besides `error` and `message`. */
  override answerFields(): { readonly campaignId: string; readonly remaining: string } {
    return { campaignId: this.campaignId, remaining: this.remaining.toString() };
  }
}

/**
 * What a campaign's batches other than batch `$2` hold of its budget, and what they gave back, per batch then summed:
 *
 * - a batch that may still pay holds its total less what can never be paid — its duplicates (the reward was paid
 *   under another operation), its purged dead-letter entries and its open `CONFLICT` entries (the rewardId is taken);
 *   each is recorded with its amount by the statement that decides it, behind the batch's fence (ADR 0013), so no
 *   amount given back is paid later;
 * - a reverted or cancelled batch holds what it paid and kept (credits less a revert's debits), and gives back the
 *   rest (a cancelled batch pays nothing more, ADR 0013).
 *
 * `reserved + released` is always the batches' totals.
 */
const RESERVATION_SQL = `
with per_batch as (
  select coalesce(b.amount_total, 0) as total,
    case when b.status in ('reverted', 'partially_reverted') or b.cancelled_at is not null then
      coalesce(b.amount_total, 0) - (select coalesce(sum(l.amount), 0) from ledger_entries l
        where l.batch_id = b.batch_id and (l.kind = 'reward' or (l.kind = 'debit' and l.operation_id like 'revert:%')))
    else
      (select coalesce(sum(d.amount), 0) from reward_duplicates d where d.batch_id = b.batch_id)
      + (select coalesce(sum(e.amount), 0) from dead_letters e
          where e.batch_id = b.batch_id and (e.state = 'purged' or (e.reason = 'CONFLICT' and e.state = 'open')))
    end as released
  from reward_batches b
  where b.campaign_id = $1 and b.batch_id <> $2
)
select coalesce(sum(total - released), 0)::text as reserved, coalesce(sum(released), 0)::text as released
from per_batch`;

/** What a campaign's batches hold of its budget and what they gave back (minor units). */
export interface CampaignReservation {
  readonly reserved: bigint;
  readonly released: bigint;
}

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
  const { reserved } = await reservationOf(client, campaignId, batchId);
  const remaining = BigInt(budget) - reserved;
  if (amount > remaining) throw new BudgetExceededError(campaignId, batchId, amount, remaining, BigInt(budget));
}

/**
 * What campaign `campaignId`'s batches other than `exceptBatchId` hold of its budget and gave back (see
 * {@link RESERVATION_SQL}).
 */
export async function reservationOf(
  db: Queryable,
  campaignId: string,
  exceptBatchId = '',
): Promise<CampaignReservation> {
  const { rows } = await db.query<{ reserved: string; released: string }>(RESERVATION_SQL, [campaignId, exceptBatchId]);
  return { reserved: BigInt(rows[0]!.reserved), released: BigInt(rows[0]!.released) };
}
