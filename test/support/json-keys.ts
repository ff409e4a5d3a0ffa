/**
 * Finds keys written twice in the same object of a JSON text (`{"a":1,"a":2}`), which JSON.parse silently
 * collapses to the last one. Returns each repeated key once per object where it repeats, as `path.key`.
 */
export function repeatedJsonKeys(text: string): string[] {
  let at = 0;
  const found: string[] = [];
  const space = (): void => {
    while (/\s/.test(text[at] ?? '')) at += 1;
  };
  const string = (): string => {
    const start = at;
    at += 1;
    while (text[at] !== '"') {
      if (at >= text.length) throw new Error(`unterminated string at ${start}`);
      at += text[at] === '\\' ? 2 : 1;
    }
    at += 1;
    return JSON.parse(text.slice(start, at)) as string;
  };
  const value = (path: string): void => {
    space();
    const char = text[at];
    if (char === '{') {
      at += 1;
      const keys = new Set<string>();
      space();
      if (text[at] === '}') {
        at += 1;
        return;
      }
      for (;;) {
        space();
        const key = string();
        if (keys.has(key)) found.push(`${path}${key}`);
        keys.add(key);
        space();
        at += 1; // :
        value(`${path}${key}.`);
        space();
        const next = text[at++];
        if (next === '}') return;
        if (next !== ',') throw new Error(`expected , or } at ${at - 1} in ${text.slice(0, 200)}`);
      }
    }
    if (char === '[') {
      at += 1;
      space();
      if (text[at] === ']') {
        at += 1;
        return;
      }
      for (;;) {
        value(`${path}[].`);
        space();
        const next = text[at++];
        if (next === ']') return;
        if (next !== ',') throw new Error(`expected , or ] at ${at - 1}`);
      }
    }
    if (char === '"') {
      string();
      return;
    }
    const literal = /^(true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(at));
    if (!literal) throw new Error(`unexpected ${JSON.stringify(char)} at ${at}`);
    at += literal[0].length;
  };
  value('');
  return found;
}
