export * from './amount.js';
