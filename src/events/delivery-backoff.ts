/** When failed deliveries are tried again, and for how long. */
export interface DeliveryBackoff {
  /** Wait after the first failed attempt; doubled after each further one. Default 1000 (1 s). */
  readonly firstMs: number;
  /** Longest wait between two attempts. Default 3600000 (1 h). */
  readonly capMs: number;
  /** Age of an event after which a failed attempt is the last: the event is marked `failed`. Default 86400000 (24 h). */
  readonly maxAgeMs: number;
}

/** The production schedule: 1 s, 2 s, 4 s, … 34 min 8 s, then hourly, until the event is 24 h old (about 35 attempts). */
export const DEFAULT_DELIVERY_BACKOFF: DeliveryBackoff = Object.freeze({
  firstMs: 1000,
  capMs: 3_600_000,
  maxAgeMs: 24 * 3_600_000,
});

/** The wait after `failedAttempts` (≥ 1) failed attempts: `firstMs × 2^(failedAttempts − 1)`, at most `capMs`. */
export function deliveryBackoffMs(
  failedAttempts: number,
  backoff: Pick<DeliveryBackoff, 'firstMs' | 'capMs'> = DEFAULT_DELIVERY_BACKOFF,
): number {
  const exponent = Math.max(0, failedAttempts - 1);
  // 2^exponent overflows to Infinity long after it passes any cap; min() keeps the cap
  return Math.min(backoff.capMs, backoff.firstMs * 2 ** exponent);
}

/**
 * The wait before the next attempt of an event recorded at `createdAtMs`: the backoff, shortened so that the last
 * attempt happens when the event turns `maxAgeMs` old rather than after it (never negative).
 */
export function nextAttemptDelayMs(
  failedAttempts: number,
  createdAtMs: number,
  nowMs: number,
  backoff: DeliveryBackoff = DEFAULT_DELIVERY_BACKOFF,
): number {
  const untilGivingUp = createdAtMs + backoff.maxAgeMs - nowMs;
  return Math.max(0, Math.min(deliveryBackoffMs(failedAttempts, backoff), untilGivingUp));
}

/** Whether an attempt failing at `nowMs` is the last for an event recorded at `createdAtMs`. */
export function deliveryExpired(
  createdAtMs: number,
  nowMs: number,
  backoff: Pick<DeliveryBackoff, 'maxAgeMs'> = DEFAULT_DELIVERY_BACKOFF,
): boolean {
  return nowMs >= createdAtMs + backoff.maxAgeMs;
}
