export * from './lock-policy.js';
export * from './lock-errors.js';
export * from './user-locks.js';
export * from './abortable-sleep.js';
