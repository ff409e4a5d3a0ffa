export * from './service-check.js';
export * from './windfall.js';
