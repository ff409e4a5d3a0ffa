import { problem, type Problem } from './row-problems.js';
import { WindfallError } from '../errors/windfall-error.js';

/** Longest line accepted in a reward file; longer lines are reported as errors and skipped, never buffered. */
export const MAX_LINE_BYTES = 1 << 20;

/** One line of a text file: its 1-based number and its text, or why it could not be read. */
export type TextLine =
  | { readonly lineNo: number; readonly text: string; readonly problem?: undefined }
  | { readonly lineNo: number; readonly text?: undefined; readonly problem: Problem };

/** The file as a whole cannot be read as text (for example, it is UTF-16). */
export class FileEncodingError extends WindfallError {
  static override readonly code = 'FILE_ENCODING_INVALID';
  override readonly name = 'FileEncodingError';
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Bytes of the longest byte-order mark looked for (UTF-8's). */
const BOM_BYTES = 3;

/**
 * The pieces of `source` as Buffers, the first holding at least the first {@link BOM_BYTES} bytes of the stream (or
 * all of a shorter one): a byte-order mark cut across the first pieces is seen whole.
 */
async function* withWholeStart(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<Buffer> {
  let start: Buffer[] | null = [];
  let startBytes = 0;
  for await (const piece of source) {
    const chunk =
      typeof piece === 'string'
        ? Buffer.from(piece, 'utf8')
        : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    if (start === null) {
      yield chunk;
      continue;
    }
    start.push(chunk);
    startBytes += chunk.length;
    if (startBytes >= BOM_BYTES) {
      yield start.length === 1 ? chunk : Buffer.concat(start);
      start = null;
    }
  }
  if (start !== null && startBytes > 0) yield Buffer.concat(start);
}

/**
 * Splits a byte stream into UTF-8 lines (LF or CRLF), streaming: memory stays bounded by {@link MAX_LINE_BYTES}.
 * Strips a UTF-8 byte-order mark; refuses UTF-16 files; reports lines that are not valid UTF-8 or too long.
 */
export async function* readLines(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<TextLine> {
  for await (const lines of readLineBatches(source)) yield* lines;
}

/**
 * {@link readLines} a piece of the stream at a time: the lines that end in each piece read, as one array (the same
 * lines, numbers and problems, with far fewer asynchronous steps). A piece that holds only whole, valid lines is
 * decoded in one go.
 */
export async function* readLineBatches(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<TextLine[]> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let overlong = false;
  let lineNo = 0;
  let first = true;

  const finishLine = (bytes: Buffer): TextLine => {
    lineNo += 1;
    if (overlong) {
      overlong = false;
      return { lineNo, problem: problem('line_too_long', `line is longer than ${MAX_LINE_BYTES} bytes`) };
    }
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end -= 1;
    try {
      return { lineNo, text: decoder.decode(bytes.subarray(0, end)) };
    } catch {
      return { lineNo, problem: problem('invalid_utf8', 'is not valid UTF-8 (save the file as UTF-8)') };
    }
  };

  for await (let chunk of withWholeStart(source)) {
    if (first && chunk.length > 0) {
      first = false;
      if ((chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff)) {
        throw new FileEncodingError('the file is UTF-16; save it as UTF-8');
      }
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    }
    const lines: TextLine[] = [];
    let start = 0;
    /** The line ending at `newline` (a byte index of this piece), joined to what the last piece left over. */
    const takeLine = (newline: number): void => {
      const part = chunk.subarray(start, newline);
      let line: Buffer;
      if (pending.length > 0) {
        if (!overlong) pending.push(part);
        line = overlong ? Buffer.alloc(0) : Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      } else {
        line = part;
      }
      if (line.length > MAX_LINE_BYTES) overlong = true;
      lines.push(finishLine(line));
      start = newline + 1;
    };
    if (pending.length > 0 || overlong) {
      // finish the line the last piece left open
      const newline = chunk.indexOf(0x0a);
      if (newline !== -1) takeLine(newline);
    }
    if (start > 0 || (pending.length === 0 && !overlong)) {
      // Whole lines only, shorter than the limit: decode them at once (a newline byte never occurs inside a
      // multi-byte character). Any invalid byte sends them down the line-by-line path, which names the line.
      const last = chunk.lastIndexOf(0x0a);
      if (last >= start && last - start < MAX_LINE_BYTES) {
        let text: string | undefined;
        try {
          text = decoder.decode(chunk.subarray(start, last));
        } catch {
          text = undefined;
        }
        if (text !== undefined) {
          let from = 0;
          for (;;) {
            const newline = text.indexOf('\n', from);
            const end = newline === -1 ? text.length : newline;
            lineNo += 1;
            lines.push({
              lineNo,
              text: end > from && text.charCodeAt(end - 1) === 0x0d ? text.slice(from, end - 1) : text.slice(from, end),
            });
            if (newline === -1) break;
            from = newline + 1;
          }
          start = last + 1;
        }
      }
    }
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline === -1) break;
      takeLine(newline);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (!overlong) {
        pendingBytes += rest.length;
        if (pendingBytes > MAX_LINE_BYTES) {
          overlong = true;
          pending = [];
          pendingBytes = 0;
        } else {
          pending.push(Buffer.from(rest));
        }
      }
    }
    if (lines.length > 0) yield lines;
  }
  if (pending.length > 0 || overlong) {
    yield [finishLine(overlong ? Buffer.alloc(0) : Buffer.concat(pending))];
  }
}
