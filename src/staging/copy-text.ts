/** PostgreSQL's COPY text format: escaping values, collecting rows into CopyData-sized buffers, reading them back. */

/** Escapes a value for COPY's text format (backslash, tab, newline, carriage return). */
export function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (char) => COPY_ESCAPES[char]!) : value;
}
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** Bytes of one buffer of a {@link CopyBuffer}: a few pieces of text (each at most 60,000 UTF-16 units). */
const POOLED_BYTES = 256 * 1024;

/**
 * Collects COPY text rows into buffers (one CopyData message each) that are used again once their chunk has been
 * copied ({@link recycle}): staging a batch allocates the buffers of the two chunks in flight, not new ones for every
 * chunk. (New buffers each time left tens of MB of copied chunks waiting, as external memory, for a full garbage
 * collection while a big batch was read: `windfall serve` peaked 20–40 MB higher on a 2,000,000-reward upload.)
 */
export class CopyBuffer {
  private text = '';
  private readonly chunks: Buffer[] = [];
  private readonly free: Buffer[] = [];
  private current: Buffer | null = null;
  private used = 0;

  /** Appends one row (its fields already escaped and joined by tabs). */
  row(line: string): void {
    this.text += line;
    this.text += '\n';
    if (this.text.length > 60_000) this.cut();
  }

  /** Moves the text so far into the current buffer (a fresh one when it does not fit). */
  private cut(): void {
    if (this.text.length === 0) return;
    const bytes = Buffer.byteLength(this.text, 'utf8');
    if (this.current === null || this.used + bytes > this.current.length) {
      this.seal();
      const reused = this.free.pop();
      this.current =
        reused !== undefined && reused.length >= bytes ? reused : Buffer.allocUnsafeSlow(Math.max(POOLED_BYTES, bytes));
    }
    this.used += this.current.write(this.text, this.used, 'utf8');
    this.text = '';
  }

  /** Hands the current buffer's bytes on as a chunk piece. */
  private seal(): void {
    if (this.current !== null && this.used > 0) this.chunks.push(this.current.subarray(0, this.used));
    this.current = null;
    this.used = 0;
  }

  /** The data so far, and a fresh start. */
  take(): Buffer[] {
    this.cut();
    this.seal();
    return this.chunks.splice(0);
  }

  /** Gives back the buffers of data {@link take} returned, once nothing reads or sends them any more. */
  recycle(data: readonly Buffer[]): void {
    for (const piece of data) this.free.push(Buffer.from(piece.buffer, piece.byteOffset, piece.buffer.byteLength));
  }
}

const COPY_UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };

function copyValue(field: string): string {
  return field.includes('\\') ? field.replace(/\\(.)/g, (_, char: string) => COPY_UNESCAPES[char] ?? char) : field;
}

/**
 * Reads back `reward_batch_items` rows from their COPY text (batch_id, shard, uid, reward_id, row_no, amount,
 * description), for the rare chunk that has to be inserted again row by row.
 */
export function rowsOfCopyText(
  data: readonly Buffer[],
): { shard: number; uid: string; rewardId: string; row: number; amount: string; description: string | null }[] {
  const rows: {
    shard: number;
    uid: string;
    rewardId: string;
    row: number;
    amount: string;
    description: string | null;
  }[] = [];
  for (const line of Buffer.concat(data).toString('utf8').split('\n')) {
    if (line === '') continue;
    const [, shard, uid, rewardId, row, amount, description] = line.split('\t') as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    rows.push({
      shard: Number(shard),
      uid: copyValue(uid),
      rewardId: copyValue(rewardId),
      row: Number(row),
      amount,
      description: description === '\\N' ? null : copyValue(description),
    });
  }
  return rows;
}
