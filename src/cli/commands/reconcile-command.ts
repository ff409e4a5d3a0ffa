import type { Command } from 'commander';
import type { CommandRegistry } from '../context.js';

/** Registers reconcile (reliability issue). */
export function registerReconcileCommand(_program: Command, _registry: CommandRegistry): void {
  // not yet built
}
