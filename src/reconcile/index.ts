export * from './reconcile.js';
export * from './resume-work.js';
export * from './recovery-watchdog.js';
