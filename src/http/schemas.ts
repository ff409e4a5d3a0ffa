/**
 * The JSON schemas of the HTTP API, for the OpenAPI document: they live with the routes that validate by them
 * (`routes/schemas.ts`), so that the routes import nothing of `src/http/` (no folder imports one importing it back).
 */
export * from './routes/schemas.js';
