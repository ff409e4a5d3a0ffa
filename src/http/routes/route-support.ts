import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import { httpActor } from '../../audit/audit-trail.js';

/**
 * A scope of `windfall serve` whose handlers see params, query and body as their route's JSON schema types them
 * (with the defaults it fills in): the producer scope (API token) and the operator scope (admin token).
 */
export type TypedScope = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  JsonSchemaToTsProvider
>;

/** An error answer: `{error, message, errors?}`. */
export function fail(
  reply: FastifyReply,
  status: number,
  error: string,
  message: string,
  errors?: readonly unknown[],
): FastifyReply {
  return reply.code(status).send({ error, message, ...(errors ? { errors } : {}) });
}

/**
 * The audit trail's actor of an operator request (admin token): its address and `X-Windfall-Actor`. The address is
 * the socket's peer, or the client a trusted proxy forwarded for (`WINDFALL_TRUST_PROXY`).
 */
export function actorOf(request: FastifyRequest): string {
  return httpActor('admin', request.ip, request.headers['x-windfall-actor']);
}
