import type { Command } from 'commander';
import type { CommandRegistry } from '../context.js';

/** Registers queues, dlq list|show|replay|purge, lock status|release (operator issue). */
export function registerOperatorCommands(_program: Command, _registry: CommandRegistry): void {
  // not yet built
}
