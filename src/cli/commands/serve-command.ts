import type { Command } from 'commander';
import type { CommandRegistry } from '../context.js';

/** Registers serve: the HTTP API, metrics and dashboard (operator issue). */
export function registerServeCommand(_program: Command, _registry: CommandRegistry): void {
  // not yet built
}
