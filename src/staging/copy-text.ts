/** PostgreSQL's COPY text format: escaping values, collecting rows into CopyData-sized buffers, reading them back. */

/** Escapes a value for COPY's text format (backslash, tab, newline, carriage return). */
export function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (char) => COPY_ESCAPES[char]!) : value;
}
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** Collects COPY text rows into buffers of about 64 KiB (one CopyData message each). */
export class CopyBuffer {
  private text = '';
  private readonly chunks: Buffer[] = [];

  /** Appends one row (its fields already escaped and joined by tabs). */
  row(line: string): void {
    this.text += line;
    this.text += '\n';
    if (this.text.length > 60_000) this.cut();
  }

  private cut(): void {
    if (this.text.length === 0) return;
    this.chunks.push(Buffer.from(this.text, 'utf8'));
    this.text = '';
  }

  /** The data so far, and a fresh start. */
  take(): Buffer[] {
    this.cut();
    return this.chunks.splice(0);
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
