export * from './batch-errors.js';
export * from './batch-status.js';
export * from './stage-batch.js';
export * from './batch-revert.js';
