import type { SettlingUser } from './settling-user.js';

/** Users already taken from the line are dropped from its array once there are more than this many (and half). */
const COMPACT_AFTER = 1024;

/**
 * The users of every job of a worker process waiting for their lock round, in the order their locks are taken: by
 * rank (the job's BullMQ priority, lower first), then in arrival order. Users put back (their locks could not be
 * taken now) go to the head.
 */
export class SettlementLine {
  private users: SettlingUser[] = [];
  private head = 0;

  /** Users waiting. */
  get length(): number {
    return this.users.length - this.head;
  }

  /**
   * Adds a job's users (all of one rank) behind those of equal or lower rank, ahead of any of higher rank: a small
   * batch's users do not wait behind the big batch's users already in line.
   */
  join(users: readonly SettlingUser[]): void {
    const rank = users[0]?.rank;
    if (rank === undefined) return;
    const last = this.users[this.users.length - 1];
    if (this.length === 0 || last!.rank <= rank) {
      for (const user of users) this.users.push(user);
      return;
    }
    let at = this.head;
    while (this.users[at]!.rank <= rank) at += 1;
    // (the users already taken from the line are dropped on the way)
    this.users = this.users.slice(this.head, at).concat(users, this.users.slice(at));
    this.head = 0;
  }

  /** Takes the first `count` users (fewer when fewer wait). */
  take(count: number): SettlingUser[] {
    const taken = this.users.slice(this.head, this.head + count);
    this.head += taken.length;
    if (this.head > COMPACT_AFTER && this.head * 2 > this.users.length) {
      this.users = this.users.slice(this.head);
      this.head = 0;
    }
    return taken;
  }

  /** Puts users back at the head of the line, in their order, whatever their rank. */
  putBack(users: readonly SettlingUser[]): void {
    this.users.splice(this.head, 0, ...users);
  }

  /** Empties the line (the worker is stopping), answering the users that were in it. */
  takeAll(): SettlingUser[] {
    const users = this.users.slice(this.head);
    this.users = [];
    this.head = 0;
    return users;
  }
}
