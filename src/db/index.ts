export * from './schema.js';
export * from './database.js';
export * from './create-database.js';
export * from './migrate.js';
export * from './pg-errors.js';
