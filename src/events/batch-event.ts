import type { BatchStatus } from '../db/schema.js';
import type { BatchEventType } from '../db/stored-values.js';

/** The `data` of an event: the batch as it was when the event was recorded. */
export interface BatchEventData {
  readonly batchId: string;
  /** The batch's campaign (`enqueue --campaign`), or null. */
  readonly campaignId: string | null;
  readonly status: BatchStatus;
  readonly total: number;
  readonly applied: number;
  readonly duplicate: number;
  readonly deadLettered: number;
  /** Applied rewards debited back; only in `batch.reverted`. */
  readonly reverted?: number;
}

/** The JSON document POSTed to the receiver. */
export interface BatchEventBody {
  /** Stable across attempts: receivers dedupe on it. A UUID. */
  readonly id: string;
  readonly type: BatchEventType;
  /** When the event was recorded (ISO 8601, UTC, milliseconds); stable across attempts. */
  readonly createdAt: string;
  readonly data: BatchEventData;
}

/**
 * The raw body of an event, rendered from its stored row with a fixed key order, so that every attempt sends the
 * same bytes (the signature covers them). `data` as stored is read key by key: a key a later version adds to the
 * row is only sent once this function names it.
 */
export function renderEventBody(event: {
  readonly id: string;
  readonly type: BatchEventType;
  readonly createdAt: Date;
  readonly data: Record<string, unknown>;
}): string {
  const stored = event.data;
  const data: Record<string, unknown> = {
    batchId: stored['batchId'],
    campaignId: stored['campaignId'] ?? null,
    status: stored['status'],
    total: stored['total'],
    applied: stored['applied'],
    duplicate: stored['duplicate'],
    deadLettered: stored['deadLettered'],
  };
  if (event.type === 'batch.reverted') data['reverted'] = stored['reverted'] ?? 0;
  return JSON.stringify({ id: event.id, type: event.type, createdAt: event.createdAt.toISOString(), data });
}
