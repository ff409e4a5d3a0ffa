import { JsonNumber } from '../money/amount.js';
import { WindfallError } from '../errors/windfall-error.js';

/** A JSON value in which numbers keep their text ({@link JsonNumber}) so amounts like `1.0` or `1e2` can be refused. */
export type RawJsonValue = null | boolean | string | JsonNumber | RawJsonValue[] | { [key: string]: RawJsonValue };

/** Malformed JSON, with the character position of the problem. */
export class JsonSyntaxError extends WindfallError {
  static override readonly code = 'JSON_INVALID';
  override readonly name = 'JsonSyntaxError';
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at character ${position + 1}`);
  }
}

const MAX_DEPTH = 64;

/**
 * Parses JSON text (RFC 8259) keeping numbers as text. Refuses duplicate object keys (`{"amount":1,"amount":9}`
 * would otherwise silently keep one), nesting deeper than 64 levels and trailing content.
 */
export function parseRawJson(text: string): RawJsonValue {
  let position = 0;
  const length = text.length;

  const fail = (message: string): never => {
    throw new JsonSyntaxError(message, position);
  };
  const skipWhitespace = (): void => {
    while (position < length) {
      const code = text.charCodeAt(position);
      if (code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09) position += 1;
      else break;
    }
  };

  const parseString = (): string => {
    // position is at the opening quote
    position += 1;
    let result = '';
    let start = position;
    while (position < length) {
      const code = text.charCodeAt(position);
      if (code === 0x22) {
        result += text.slice(start, position);
        position += 1;
        return result;
      }
      if (code === 0x5c) {
        result += text.slice(start, position);
        const escape = text[position + 1];
        switch (escape) {
          case '"':
            result += '"';
            break;
          case '\\':
            result += '\\';
            break;
          case '/':
            result += '/';
            break;
          case 'b':
            result += '\b';
            break;
          case 'f':
            result += '\f';
            break;
          case 'n':
            result += '\n';
            break;
          case 'r':
            result += '\r';
            break;
          case 't':
            result += '\t';
            break;
          case 'u': {
            const hex = text.slice(position + 2, position + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape in a string');
            result += String.fromCharCode(parseInt(hex, 16));
            position += 4;
            break;
          }
          default:
            fail('bad escape in a string');
        }
        position += 2;
        start = position;
        continue;
      }
      if (code < 0x20) fail('control character inside a string (escape it)');
      position += 1;
    }
    return fail('unterminated string');
  };

  const parseNumber = (): JsonNumber => {
    const match = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    match.lastIndex = position;
    const found = match.exec(text);
    if (!found || found[0] === '-') fail('bad number');
    const raw = (found as RegExpExecArray)[0];
    position += raw.length;
    return new JsonNumber(raw);
  };

  const parseValue = (depth: number): RawJsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH} levels`);
    skipWhitespace();
    const char = text[position];
    switch (char) {
      case '{': {
        position += 1;
        const object: { [key: string]: RawJsonValue } = Object.create(null) as { [key: string]: RawJsonValue };
        skipWhitespace();
        if (text[position] === '}') {
          position += 1;
          return object;
        }
        for (;;) {
          skipWhitespace();
          if (text[position] !== '"') fail('expected a quoted key');
          const key = parseString();
          if (Object.prototype.hasOwnProperty.call(object, key)) fail(`key ${JSON.stringify(key)} appears twice`);
          skipWhitespace();
          if (text[position] !== ':') fail('expected ":" after a key');
          position += 1;
          object[key] = parseValue(depth + 1);
          skipWhitespace();
          if (text[position] === ',') {
            position += 1;
            continue;
          }
          if (text[position] === '}') {
            position += 1;
            return object;
          }
          fail('expected "," or "}" in an object');
        }
      }
      case '[': {
        position += 1;
        const array: RawJsonValue[] = [];
        skipWhitespace();
        if (text[position] === ']') {
          position += 1;
          return array;
        }
        for (;;) {
          array.push(parseValue(depth + 1));
          skipWhitespace();
          if (text[position] === ',') {
            position += 1;
            continue;
          }
          if (text[position] === ']') {
            position += 1;
            return array;
          }
          fail('expected "," or "]" in an array');
        }
      }
      case '"':
        return parseString();
      case 't':
        if (text.startsWith('true', position)) {
          position += 4;
          return true;
        }
        return fail('unexpected token');
      case 'f':
        if (text.startsWith('false', position)) {
          position += 5;
          return false;
        }
        return fail('unexpected token');
      case 'n':
        if (text.startsWith('null', position)) {
          position += 4;
          return null;
        }
        return fail('unexpected token');
      case undefined:
        return fail('unexpected end of JSON');
      default:
        if (char === '-' || (char >= '0' && char <= '9')) return parseNumber();
        return fail(`unexpected character ${JSON.stringify(char)}`);
    }
  };

  const value = parseValue(0);
  skipWhitespace();
  if (position < length) fail('unexpected content after the JSON value');
  return value;
}
