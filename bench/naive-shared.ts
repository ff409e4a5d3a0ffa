/** The naive peer's queue and job: one job per reward. */
export const NAIVE_QUEUE = 'naive-rewards';

export interface NaiveJob {
  readonly rewardId: string;
  readonly uid: string;
  readonly amount: number;
  readonly description?: string;
  readonly batchId: string;
}
