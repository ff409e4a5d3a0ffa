import type { Windfall } from '../../runtime/windfall.js';
import { readBalance, readLedger } from '../../wallet/wallet-service.js';
import type { TypedScope } from './route-support.js';
import { uidParams, walletQuery } from './schemas.js';

/** What the wallet routes use. */
export interface WalletRouteDeps {
  readonly windfall: Windfall;
}

/** Registers `GET /v1/wallets/:uid` (a user's balance and latest ledger entries) on the operator scope. */
export function registerWalletRoutes(operator: TypedScope, { windfall }: WalletRouteDeps): void {
  operator.get('/v1/wallets/:uid', { schema: { params: uidParams, querystring: walletQuery } }, async (request) => {
    const { uid } = request.params;
    const { limit } = request.query;
    return {
      uid,
      balance: (await readBalance(windfall.database.pool, uid)).toString(),
      entries: await readLedger(windfall.database.pool, uid, limit),
    };
  });
}
