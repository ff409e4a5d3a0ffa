/**
 * The last migration (`migrations/`) this version of Windfall reads and writes. A database without it is refused at
 * start-up with "run `windfall migrate`", rather than failing statement by statement. Kept beside the list of
 * migrations (`migrate.ts`, which checks that this is its last entry) and free of Kysely, so that every command can
 * check it.
 */
export const LATEST_MIGRATION = '0010_batch_cancel';
