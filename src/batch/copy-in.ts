import type pg from 'pg';

/** The connection methods a COPY FROM STDIN uses (pg's `Connection`). */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/** Escapes a value for COPY's text format (backslash, tab, newline, carriage return). */
export function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (char) => COPY_ESCAPES[char]!) : value;
}
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * `COPY … FROM STDIN` of ready-made text-format data, as a node-pg submittable (the client runs it like a query,
 * in the client's current transaction). Resolves with the number of rows copied; rejects with the PostgreSQL error
 * (after which the server has dropped the rest of the data).
 */
export function copyIn(client: pg.ClientBase, sql: string, data: readonly Buffer[]): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let error: unknown;
    let rows = 0;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      if (error !== undefined) reject(error);
      else resolve(rows);
    };
    const submittable = {
      submit(connection: CopyConnection): void {
        connection.query(sql);
      },
      handleCopyInResponse(connection: CopyConnection): void {
        for (const chunk of data) connection.sendCopyFromChunk(chunk);
        connection.endCopyFrom();
      },
      handleCommandComplete(message: { text?: string }): void {
        rows = Number(/^COPY (\d+)/.exec(message.text ?? '')?.[1] ?? 0);
      },
      handleError(failure: unknown): void {
        // node-pg lets go of the query at the error (its ReadyForQuery goes to the client): finish now
        error ??= failure;
        finish();
      },
      handleReadyForQuery(): void {
        finish();
      },
      handleRowDescription(): void {},
      handleDataRow(): void {},
      handleEmptyQuery(): void {},
      handlePortalSuspended(): void {},
      handleCopyData(): void {},
    };
    (client as unknown as { query(submittable: unknown): unknown }).query(submittable);
  });
}

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
export function rowsOfCopyText(data: readonly Buffer[]): { shard: number; uid: string; rewardId: string; row: number; amount: string; description: string | null }[] {
  const rows: { shard: number; uid: string; rewardId: string; row: number; amount: string; description: string | null }[] = [];
  for (const line of Buffer.concat(data).toString('utf8').split('\n')) {
    if (line === '') continue;
    const [, shard, uid, rewardId, row, amount, description] = line.split('\t') as [string, string, string, string, string, string, string];
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
