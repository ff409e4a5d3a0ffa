import { setFlagsFromString } from 'node:v8';
import { InvalidArgumentError, type Command } from 'commander';
import { type CommandRegistry, resolveConfig } from '../support/context.js';
import { checkServerTokens } from '../../http/auth.js';
import { printJson } from '../support/output.js';

function portNumber(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535)
    throw new InvalidArgumentError('--port must be a whole number from 0 to 65535 (0 = any free port)');
  return Number(value);
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once with code 1. */
function stopSignal(onSecond: (signal: string) => void): Promise<string> {
  return new Promise((resolve) => {
    let signals = 0;
    const handle = (signal: string): void => {
      signals += 1;
      if (signals > 1) {
        onSecond(signal);
        process.exit(1);
      }
      resolve(signal);
    };
    process.on('SIGINT', () => handle('SIGINT'));
    process.on('SIGTERM', () => handle('SIGTERM'));
  });
}

/**
 * How far V8 lets the old generation grow past what the last full collection kept, in percent. A streamed upload
 * turns over much short-lived garbage (a parsed object per row), and V8's own factor (up to 4×) let it pile up: a
 * 2,000,000-reward upload peaked at 254–284 MB on Node 22 with it, 164–175 MB with 20 %, in the same time
 * (test/perf-ndjson-upload.test.ts holds the bound).
 */
const HEAP_GROWING_PERCENT = 20;

/**
 * serve's garbage collection: a young generation of at most 8 MB a semi-space (so that per-row garbage is not
 * promoted) and an old generation that grows by {@link HEAP_GROWING_PERCENT} at a time. A flag of the same name in
 * NODE_OPTIONS or on node's command line wins.
 */
function tuneGarbageCollection(): void {
  // V8 reads its flags with - or _ alike
  const given = `${process.env['NODE_OPTIONS'] ?? ''} ${process.execArgv.join(' ')}`.replaceAll('_', '-');
  if (!/--max-semi-space-size/.test(given)) setFlagsFromString('--max-semi-space-size=8');
  if (!/--heap-growing-percent/.test(given)) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

/** Registers serve: the HTTP API, metrics and dashboard (operator issue). */
export function registerServeCommand(program: Command, registry: CommandRegistry): void {
  program
    .command('serve')
    .description(
      'the HTTP API (producer and operator routes), /metrics, /healthz, /readyz, the operator console at /console and the dashboard at /admin/queues',
    )
    .option('--port <port>', 'TCP port (0 = any free port)', portNumber, 3000)
    .option('--host <host>', 'interface to listen on', '0.0.0.0')
    .option('--openapi', 'print the OpenAPI document of the routes and exit')
    .action(async (options: { port: number; host: string; openapi?: boolean }, command: Command) => {
      tuneGarbageCollection();
      if (options.openapi) {
        const { openApiDocument } = await import('../../http/openapi.js');
        printJson(openApiDocument());
        return;
      }
      const { config, logger } = resolveConfig(registry.globals(command), {}, false);
      const { apiToken, adminToken } = config;
      checkServerTokens(apiToken, adminToken);
      if (!config.adminToken)
        logger.warn('WINDFALL_ADMIN_TOKEN is not set: operator routes and the dashboard answer 401');
      for (const [name, token] of [
        ['WINDFALL_API_TOKEN', config.apiToken],
        ['WINDFALL_ADMIN_TOKEN', config.adminToken],
      ] as const) {
        if (token !== undefined && token.length < 16)
          logger.warn(
            { variable: name },
            `${name} is shorter than 16 characters: use a long random token (for example \`openssl rand -hex 32\`)`,
          );
      }

      // loaded here so that other commands do not pay for Windfall's services, fastify and Bull Board at start-up
      const [{ WindfallMetrics }, { openWindfall }, { buildHttpServer }] = await Promise.all([
        import('../../metrics/metrics.js'),
        import('../../runtime/windfall.js'),
        import('../../http/server.js'),
      ]);
      // a statement on a silent connection (a failover to another host) is given up after a deadline, answered 503,
      // and the pool starts afresh, rather than waiting for TCP for a quarter of an hour
      const windfall = await openWindfall(config, logger, {
        metrics: new WindfallMetrics({ defaultMetrics: true }),
        statementDeadlines: 'server',
      });
      try {
        const app = await buildHttpServer(windfall, {
          apiToken,
          adminToken,
          bodyLimit: config.httpBodyLimit,
        });
        const stopped = stopSignal((signal) =>
          logger.error({ signal }, 'second signal: exiting without waiting for requests'),
        );
        await app.listen({ port: options.port, host: options.host });
        const address = app.server.address();
        const port = typeof address === 'object' && address ? address.port : options.port;
        logger.info(
          { host: options.host, port, bodyLimit: config.httpBodyLimit, operatorRoutes: Boolean(config.adminToken) },
          `HTTP server listening on port ${port}`,
        );
        const signal = await stopped;
        logger.info({ signal }, 'stopping: finishing in-flight requests');
        await app.close();
        logger.info('HTTP server stopped');
      } finally {
        await windfall.close();
      }
    });
}
