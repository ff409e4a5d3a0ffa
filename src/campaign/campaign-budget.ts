import type pg from 'pg';
import { recordAudit } from '../audit/audit-trail.js';
import { queryBuilder, runQuery } from '../db/query-builder.js';
import { inTransaction } from '../db/transaction.js';
import { identifierProblem, REVERT_ID_PREFIX } from '../rewards/field-rules.js';
import { reservationOf } from '../staging/budget-reservation.js';
import { WindfallError } from '../errors/windfall-error.js';
import type { Queryable } from '../db/queryable.js';

/** Largest budget accepted, in minor units (40 digits fit the column). */
const MAX_BUDGET_DIGITS = 30;

/** A campaign as `windfall campaign show` and `GET /v1/campaigns/:id` give it (money as digit strings). */
export interface CampaignReport {
  readonly campaignId: string;
  /** Minor units; null = no budget (unlimited). */
  readonly budget: string | null;
  /**
   * What the campaign's accepted batches may pay out or have paid: their totals, less what they gave back
   * (`released`).
   */
  readonly reserved: string;
  /** Credited by the campaign's batches, less what was reverted. */
  readonly applied: string;
  /**
   * Given back by the campaign's batches: rewards that can never be paid (duplicates, purged dead-letter entries,
   * open conflicts) and what reverts took back. `reserved + released` is the batches' totals.
   */
  readonly released: string;
  /** budget − reserved (negative once the budget was lowered below what is reserved); null when unlimited. */
  readonly remaining: string | null;
}

/** The request is invalid (a bad campaign id or budget); nothing was changed. */
export class CampaignRequestError extends WindfallError {
  static override readonly code = 'REQUEST_INVALID';
  override readonly name = 'CampaignRequestError';
  constructor(
    /** `campaignId` or `budget`. */
    override readonly field: 'campaignId' | 'budget',
    message: string,
  ) {
    super(message);
  }
}

/** No batch or budget names that campaign. */
export class UnknownCampaignError extends WindfallError {
  static override readonly code = 'CAMPAIGN_NOT_FOUND';
  override readonly name = 'UnknownCampaignError';
}

/** Checks a campaign id (as a batchId: 1–128 characters, no control characters or surrounding space). */
export function assertCampaignId(campaignId: unknown): asserts campaignId is string {
  const problem = identifierProblem(campaignId);
  if (problem) throw new CampaignRequestError('campaignId', `campaignId ${problem.reason}`);
}

/**
 * Parses a budget: a whole number of minor units ≥ 0, as a JSON integer or a string of digits; `null` or
 * `"unlimited"` removes the budget (null).
 */
export function parseBudget(input: unknown): bigint | null {
  if (input === null || input === 'unlimited') return null;
  if (typeof input === 'number' && Number.isSafeInteger(input) && input >= 0) return BigInt(input);
  if (typeof input === 'string' && /^[0-9]+$/.test(input) && input.length <= MAX_BUDGET_DIGITS) return BigInt(input);
  throw new CampaignRequestError(
    'budget',
    `budget must be a whole number of minor units (cents) ≥ 0, as digits (at most ${MAX_BUDGET_DIGITS}), or "unlimited" (null over HTTP) to remove it; got ${JSON.stringify(input) ?? String(input)}`,
  );
}

/**
 * The campaign's budget and what its batches reserve and applied; null when no batch or budget names it.
 * @throws {@link CampaignRequestError} for an invalid campaign id.
 */
export async function getCampaignReport(db: Queryable, campaignId: string): Promise<CampaignReport | null> {
  assertCampaignId(campaignId);
  const { db: qb, sql } = await queryBuilder();
  const [campaign] = await runQuery(
    db,
    qb.selectFrom('campaigns').select('budget').where('campaign_id', '=', campaignId),
  );
  if (!campaign) return null;
  const budget = campaign.budget;
  // credits of the campaign's batches less their revert debits
  const applied = qb
    .selectFrom('reward_batches as b')
    .innerJoin('ledger_entries as l', 'l.batch_id', 'b.batch_id')
    .where('b.campaign_id', '=', campaignId)
    .where((eb) =>
      eb.or([
        eb('l.kind', '=', 'reward'),
        eb.and([eb('l.kind', '=', 'debit'), eb('l.operation_id', 'like', `${REVERT_ID_PREFIX}%`)]),
      ]),
    )
    .select((eb) => eb.cast<string>(eb.fn.coalesce(eb.fn.sum('l.amount'), sql.lit(0)), 'text').as('applied'));
  const [{ reserved, released }, appliedRows] = await Promise.all([
    reservationOf(db, campaignId),
    runQuery(db, applied),
  ]);
  return {
    campaignId,
    budget,
    reserved: reserved.toString(),
    applied: appliedRows[0]!.applied,
    released: released.toString(),
    remaining: budget === null ? null : (BigInt(budget) - reserved).toString(),
  };
}

/** Who sets a budget and why (audit trail). */
export interface SetBudgetOptions {
  /** Default `library`. */
  readonly actor?: string;
}

/**
 * Sets (or changes, or with a null budget removes) a campaign's budget, creating the campaign when new, and records it in the audit trail in the
 * same transaction (`campaign.budget`, with the previous budget). Lowering a budget below what is reserved refuses
 * new batches of the campaign and changes nothing of those accepted.
 * @throws {@link CampaignRequestError} for a bad campaign id or budget.
 */
export async function setCampaignBudget(
  pool: pg.Pool,
  campaignId: unknown,
  budgetInput: unknown,
  options: SetBudgetOptions = {},
): Promise<CampaignReport> {
  assertCampaignId(campaignId);
  const budget = parseBudget(budgetInput);
  await inTransaction(pool, async (client) => {
    const previous = await client.query<{ budget: string | null }>(
      'select budget::text as budget from campaigns where campaign_id = $1 for no key update',
      [campaignId],
    );
    await client.query(
      `insert into campaigns (campaign_id, budget) values ($1, $2::numeric)
       on conflict (campaign_id) do update set budget = excluded.budget, updated_at = now()`,
      [campaignId, budget === null ? null : budget.toString()],
    );
    await recordAudit(client, {
      actor: options.actor ?? 'library',
      action: 'campaign.budget',
      target: `campaign:${campaignId}`,
      details: { budget: budget === null ? null : budget.toString() },
      result: { previousBudget: previous.rows[0]?.budget ?? null, created: previous.rows.length === 0 },
    });
  });
  return (await getCampaignReport(pool, campaignId))!;
}
