/**
 * When a replay is finished: the one definition the recovery watchdog (which re-adds lost replay jobs) and
 * `windfall reconcile` (which calls a replay's rewards "in flight") share.
 *
 * A replayed dead-letter entry `d` is finished when each of its rewards is settled for its batch: applied by the
 * batch (a ledger entry with the rewardId written for `d.batch_id`), recorded as a duplicate of the batch, or held
 * by a child entry (`replay_of = d.id`: the replay dead-lettered it again, e.g. as CONFLICT). A replay job writes
 * exactly these, so a replay with a reward in none of them has not run to its end: its job is in Redis, or lost.
 * A reward credited elsewhere but not yet recorded as a duplicate counts as unsettled (the job records it).
 */

/**
 * A CTE `unfinished_replay_rewards(id, batch_id, uid, shard, reward_id)`: one row per unsettled reward of each
 * replayed entry. `entryCondition` narrows the entries looked at (SQL over `d`, e.g. `d.id = any($1::bigint[])`).
 */
export function UNFINISHED_REPLAY_REWARDS_CTE(entryCondition = 'true'): string {
  return `
unfinished_replay_rewards as (
  select d.id, d.batch_id, d.uid, d.shard, r.value->>'rewardId' as reward_id
  from dead_letters d cross join lateral jsonb_array_elements(d.rewards) as r(value)
  where d.state = 'replayed' and (${entryCondition})
    and not exists (select 1 from ledger_entries l where l.operation_id = r.value->>'rewardId' and l.batch_id = d.batch_id)
    and not exists (select 1 from reward_duplicates x where x.batch_id = d.batch_id and x.reward_id = r.value->>'rewardId')
    and not exists (
      select 1 from dead_letters n cross join lateral jsonb_array_elements(n.rewards) as c(value)
      where n.replay_of = d.id and c.value->>'rewardId' = r.value->>'rewardId'
    )
)`;
}
