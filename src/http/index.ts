export * from './auth.js';
export * from './dashboard.js';
export * from './openapi.js';
export * from './schemas.js';
export * from './server.js';
