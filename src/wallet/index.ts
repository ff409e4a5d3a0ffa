export * from './wallet-errors.js';
export * from './ledger-operation.js';
export * from './apply-user-operations.js';
export * from './settle-user.js';
export * from './user-failure.js';
export * from './wallet-service.js';
