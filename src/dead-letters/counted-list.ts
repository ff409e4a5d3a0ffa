/**
 * Items counted in full but kept only up to a limit (the first ones added): what a report of a bulk action lists,
 * bounded whatever the action's size.
 */
export class CountedList<T> {
  readonly items: T[] = [];
  private added = 0;

  constructor(
    /** Most items kept. */
    readonly limit: number,
  ) {}

  add(item: T): void {
    this.added += 1;
    if (this.items.length < this.limit) this.items.push(item);
  }

  /** Every item added, kept or not. */
  get count(): number {
    return this.added;
  }

  /** True when items were added beyond the limit (and are only counted). */
  get truncated(): boolean {
    return this.added > this.items.length;
  }

  /** The first `n` items kept. */
  first(n: number): T[] {
    return this.items.slice(0, n);
  }
}
