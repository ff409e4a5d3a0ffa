import type { RowError } from '../rewards/reward.js';
import { formatRowError } from '../rewards/reward.js';

/** Most row errors quoted in an error message (all of them stay in `errors`). */
const QUOTED_ERRORS = 20;

/**
 * A batch was refused as a whole: nothing was enqueued or recorded. `errors` lists every offending row.
 */
export class BatchValidationError extends Error {
  override readonly name = 'BatchValidationError';
  constructor(
    readonly errors: readonly RowError[],
    readonly rowsRead: number,
    summary?: string,
  ) {
    const quoted = errors.slice(0, QUOTED_ERRORS).map(formatRowError).join('\n  ');
    const more = errors.length > QUOTED_ERRORS ? `\n  … and ${errors.length - QUOTED_ERRORS} more` : '';
    super(
      summary ??
        `batch refused: ${errors.length} invalid row${errors.length === 1 ? '' : 's'} out of ${rowsRead}; nothing was enqueued. Fix the rows and enqueue again:\n  ${quoted}${more}`,
    );
  }
}
