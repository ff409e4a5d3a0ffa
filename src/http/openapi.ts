import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  revertReportSchema,
  revertRequestSchema,
  cancelReportSchema,
  cancelRequestSchema,
  rewardReportSchema,
  campaignBudgetSchema,
  campaignReportSchema,
  auditRecordSchema,
  eventDeliverySchema,
  batchAcceptedSchema,
  batchReportSchema,
  batchRequestSchema,
  deadLetterSchema,
  errorSchema,
  lockReleaseSchema,
  lockStatusSchema,
  readinessSchema,
  replayReportSchema,
  replayRequestSchema,
  walletSchema,
} from './schemas.js';
import {
  batchActionPaths,
  batchPaths,
  browserPaths,
  campaignPaths,
  deadLetterPaths,
  historyPaths,
  lockPaths,
  ref,
  rewardPaths,
  servicePaths,
  walletPaths,
} from './openapi-paths.js';

/** The document's security schemes and named schemas (`#/components/schemas/<name>`). */
function components(): Record<string, unknown> {
  return {
    securitySchemes: {
      apiToken: { type: 'http', scheme: 'bearer', description: 'WINDFALL_API_TOKEN' },
      adminToken: { type: 'http', scheme: 'bearer', description: 'WINDFALL_ADMIN_TOKEN' },
      adminBasic: {
        type: 'http',
        scheme: 'basic',
        description: 'any user name, WINDFALL_ADMIN_TOKEN as password (for browsers)',
      },
    },
    schemas: {
      Error: errorSchema,
      Reward: batchRequestSchema.properties.rewards.items,
      BatchRequest: {
        ...batchRequestSchema,
        properties: {
          ...batchRequestSchema.properties,
          rewards: { type: 'array', minItems: 1, items: ref('Reward') },
        },
      },
      BatchAccepted: batchAcceptedSchema,
      BatchReport: batchReportSchema,
      RewardReport: rewardReportSchema,
      Wallet: walletSchema,
      LockStatus: lockStatusSchema,
      LockRelease: lockReleaseSchema,
      DeadLetter: deadLetterSchema,
      ReplayRequest: replayRequestSchema,
      ReplayReport: replayReportSchema,
      AuditRecord: auditRecordSchema,
      EventDelivery: eventDeliverySchema,
      CancelRequest: cancelRequestSchema,
      CancelReport: cancelReportSchema,
      RevertRequest: revertRequestSchema,
      RevertReport: revertReportSchema,
      CampaignBudget: campaignBudgetSchema,
      Campaign: campaignReportSchema,
      Readiness: readinessSchema,
    },
  };
}

/** The OpenAPI 3.1 document of `windfall serve` (served at GET /openapi.json; a copy is docs/openapi.json). */
export function buildOpenApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Windfall HTTP API',
      version,
      description:
        'Producer routes (enqueue a batch, read its status) need `Authorization: Bearer <WINDFALL_API_TOKEN>` (the admin token also opens them). ' +
        'Operator routes need `WINDFALL_ADMIN_TOKEN` as a bearer token or as the password of HTTP basic auth; the API token gets 403 there. ' +
        'Money is a string of digits in every response; counts are numbers. Errors are `{error, message, errors?}`.',
    },
    components: components(),
    paths: {
      ...batchPaths(),
      ...rewardPaths(),
      ...campaignPaths(),
      ...walletPaths(),
      ...lockPaths(),
      ...deadLetterPaths(),
      ...batchActionPaths(),
      ...historyPaths(),
      ...browserPaths(),
      ...servicePaths(),
    },
  };
}

/** The version of this package (from its package.json, found walking up from this file). */
export function windfallVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth += 1) {
    try {
      const parsed = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (parsed.name === 'windfall' && parsed.version) return parsed.version;
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

/** The OpenAPI document of this version. */
export function openApiDocument(): Record<string, unknown> {
  return buildOpenApiDocument(windfallVersion());
}
