import { mix32 } from './hash-mix.js';

/** Bytes of table per fingerprint kept: two 32-bit halves, in tables kept at most half full. */
const BYTES_PER_ENTRY = 16;
/** Default most table memory: 32 MiB (2,097,152 fingerprints); beyond that the set stops and answers "maybe". */
const DEFAULT_MAX_BYTES = 32 * 1024 * 1024;

/**
 * A set of 64-bit fingerprints of strings (two independent 32-bit hashes), in typed arrays: a million entries cost
 * 16 MiB, not a million strings. It answers one question: did any string come twice? "No" is certain (equal strings
 * have equal fingerprints); "maybe" (two fingerprints equal, or too many entries to keep) sends the caller to an exact
 * check.
 */
export class FingerprintSet {
  private first = new Uint32Array(1 << 16);
  private second = new Uint32Array(1 << 16);
  private size = 0;
  private readonly maxEntries: number;
  /** True once two fingerprints matched, or once the set gave up keeping them. */
  maybeRepeats = false;

  /** @param maxBytes most memory its tables take (default 32 MiB); past it the set answers "maybe". */
  constructor(maxBytes = DEFAULT_MAX_BYTES) {
    this.maxEntries = Math.max(1, Math.floor(maxBytes / BYTES_PER_ENTRY));
  }

  add(text: string): void {
    if (this.maybeRepeats) return;
    if (this.size >= this.maxEntries) {
      this.maybeRepeats = true;
      return;
    }
    // FNV-1a and a different multiplier over UTF-16 units, each finished with a murmur-style mix
    let a = 0x811c9dc5;
    let b = 0x9747b28c;
    for (let i = 0; i < text.length; i += 1) {
      const code = text.charCodeAt(i);
      a = Math.imul(a ^ code, 0x01000193);
      b = Math.imul(b ^ code, 0x5bd1e995);
    }
    a = mix32(a) || 1; // 0 marks an empty slot
    b = mix32(b ^ text.length);
    if (this.size * 2 >= this.first.length) this.grow();
    if (this.insert(a, b)) this.size += 1;
    else this.maybeRepeats = true;
  }

  /** False when the fingerprint was there already. */
  private insert(a: number, b: number): boolean {
    const mask = this.first.length - 1;
    for (let slot = (a ^ (b >>> 7)) & mask; ; slot = (slot + 1) & mask) {
      const found = this.first[slot]!;
      if (found === 0) {
        this.first[slot] = a;
        this.second[slot] = b;
        return true;
      }
      if (found === a && this.second[slot] === b) return false;
    }
  }

  private grow(): void {
    const first = this.first;
    const second = this.second;
    this.first = new Uint32Array(first.length * 2);
    this.second = new Uint32Array(second.length * 2);
    for (let slot = 0; slot < first.length; slot += 1) if (first[slot] !== 0) this.insert(first[slot]!, second[slot]!);
  }
}
