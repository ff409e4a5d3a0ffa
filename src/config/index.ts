export * from './config.js';
export * from './config-error.js';
export * from './env-values.js';
