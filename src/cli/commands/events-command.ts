import { InvalidArgumentError, Option, type Command } from 'commander';
import { BATCH_EVENT_STATES, type BatchEventState } from '../../db/stored-values.js';
import { listEvents, type EventDelivery } from '../../events/event-store.js';
import { type CommandRegistry, withWindfall } from '../support/context.js';
import { formatTable, printJson, printLine, printNote } from '../support/output.js';

function limitOf(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('--limit must be a whole number ≥ 1');
  return Number(value);
}

/** Human form of event deliveries. */
export function describeEvents(events: readonly EventDelivery[]): string {
  if (events.length === 0) return 'no batch events match';
  return formatTable(
    ['id', 'type', 'batchId', 'state', 'attempts', 'createdAt', 'deliveredAt', 'lastError'],
    events.map((event) => [
      event.id,
      event.type,
      event.batchId,
      event.state,
      event.attempts,
      event.createdAt,
      event.deliveredAt,
      event.lastError === null ? null : event.lastError.replace(/\s+/g, ' ').slice(0, 80),
    ]),
  );
}

/** Registers `windfall events`. */
export function registerEventsCommand(program: Command, registry: CommandRegistry): void {
  program
    .command('events')
    .description('batch events (webhooks to WINDFALL_WEBHOOK_URL) and their delivery, newest first')
    .option('--batch <batchId>', 'only events of this batch')
    .addOption(new Option('--state <state>', 'only events in this state').choices(BATCH_EVENT_STATES))
    .option('--limit <n>', 'at most this many events', limitOf, 1000)
    .option('--json', 'print a JSON document')
    .action(
      async (options: { batch?: string; state?: BatchEventState; limit: number; json?: boolean }, command: Command) => {
        await withWindfall(registry.globals(command), async (windfall) => {
          const events = await listEvents(windfall.database.pool, {
            ...(options.batch !== undefined ? { batchId: options.batch } : {}),
            ...(options.state !== undefined ? { state: options.state } : {}),
            limit: options.limit,
          });
          if (options.json) printJson(events);
          else printLine(describeEvents(events));
          if (windfall.config.webhookUrl === undefined && !options.json) {
            printNote(
              'windfall: WINDFALL_WEBHOOK_URL is not set in this shell; processes without it record and send no events',
            );
          }
        });
      },
    );
}
