import { randomBytes } from 'node:crypto';
import { eventually, startCli, type CliProcess } from './cli.js';

/** A running `windfall serve` process and how to talk to it. */
export interface ServeProcess {
  readonly process: CliProcess;
  readonly baseUrl: string;
  readonly apiToken: string;
  readonly adminToken: string;
  /** Stops the server (SIGTERM) and resolves with its exit code. */
  stop(): Promise<number | string>;
}

/** A long random token, as operators should use. */
export function randomToken(label: string): string {
  return `${label}-${randomBytes(24).toString('hex')}`;
}

/**
 * Starts `windfall serve --port 0` with fresh tokens at LOG_LEVEL debug and waits until
 * it logs the port it listens on.
 */
export async function startServe(env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  const apiToken = env['WINDFALL_API_TOKEN'] ?? randomToken('api');
  const adminToken = env['WINDFALL_ADMIN_TOKEN'] ?? randomToken('admin');
  const child = startCli(['serve', '--port', '0', '--host', '127.0.0.1'], {
    ...env,
    // the most verbose level that is still useful, so that the no-token-in-logs check sees everything
    LOG_LEVEL: 'debug',
    WINDFALL_API_TOKEN: apiToken,
    WINDFALL_ADMIN_TOKEN: adminToken,
  });
  let port: number | undefined;
  try {
    await eventually(
      () => {
        const found = /HTTP server listening on port (\d+)/.exec(child.output());
        if (found) port = Number(found[1]);
        return port !== undefined || child.child.exitCode !== null;
      },
      'windfall serve to listen',
      30_000,
    );
  } catch (error) {
    child.child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\n${child.output()}`);
  }
  if (port === undefined) throw new Error(`windfall serve exited:\n${child.output()}`);
  return {
    process: child,
    baseUrl: `http://127.0.0.1:${port}`,
    apiToken,
    adminToken,
    async stop() {
      if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGTERM');
      return child.exited;
    },
  };
}
