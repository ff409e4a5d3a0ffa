/** Longest line accepted in a reward file; longer lines are reported as errors and skipped, never buffered. */
export const MAX_LINE_BYTES = 1 << 20;

/** One line of a text file: its 1-based number and its text, or why it could not be read. */
export type TextLine =
  | { readonly lineNo: number; readonly text: string; readonly problem?: undefined }
  | { readonly lineNo: number; readonly text?: undefined; readonly problem: string };

/** The file as a whole cannot be read as text (for example, it is UTF-16). */
export class FileEncodingError extends Error {
  override readonly name = 'FileEncodingError';
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Splits a byte stream into UTF-8 lines (LF or CRLF), streaming: memory stays bounded by {@link MAX_LINE_BYTES}.
 * Strips a UTF-8 byte-order mark; refuses UTF-16 files; reports lines that are not valid UTF-8 or too long.
 */
export async function* readLines(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<TextLine> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let overlong = false;
  let lineNo = 0;
  let first = true;

  const finishLine = (bytes: Buffer): TextLine => {
    lineNo += 1;
    if (overlong) {
      overlong = false;
      return { lineNo, problem: `line is longer than ${MAX_LINE_BYTES} bytes` };
    }
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end -= 1;
    try {
      return { lineNo, text: decoder.decode(bytes.subarray(0, end)) };
    } catch {
      return { lineNo, problem: 'is not valid UTF-8 (save the file as UTF-8)' };
    }
  };

  for await (const piece of source) {
    let chunk = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    if (first && chunk.length > 0) {
      first = false;
      if ((chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff)) {
        throw new FileEncodingError('the file is UTF-16; save it as UTF-8');
      }
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    }
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline === -1) break;
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
      yield finishLine(line);
      start = newline + 1;
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
  }
  if (pending.length > 0 || overlong) {
    yield finishLine(overlong ? Buffer.alloc(0) : Buffer.concat(pending));
  }
}
