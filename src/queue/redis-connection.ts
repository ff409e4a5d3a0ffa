import { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { redactUrl } from '../log/logger.js';

/**
 * Opens an ioredis connection as BullMQ needs it (`maxRetriesPerRequest: null`: commands wait across reconnects
 * instead of failing). Connection errors are logged (without the password) rather than crashing the process.
 */
export function connectRedis(url: string, logger: Logger, name = 'windfall'): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectionName: name,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let lastLogged = 0;
  let wasReady = false;
  redis.on('ready', () => {
    wasReady = true;
  });
  redis.on('error', (error: Error) => {
    const now = Date.now();
    // before the first connection, the start-up check reports the problem in plain words
    if (!wasReady) return;
    if (now - lastLogged > 5000) {
      lastLogged = now;
      logger.warn({ err: { message: error.message }, redis: redactUrl(url) }, 'Redis connection error; reconnecting');
    }
  });
  return redis;
}
