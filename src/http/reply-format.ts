import type { FastifyReply } from 'fastify';
import { toEnvLines } from './env-format.js';

/** Replies with JSON, or with KEY='value' lines when the device asked for `format=env`. */
export function replyAs(reply: FastifyReply, format: 'json' | 'env' | undefined, body: Record<string, string | number | boolean | null | undefined>) {
  if (format === 'env') return reply.type('text/plain; charset=utf-8').send(toEnvLines(body));
  return reply.send(body);
}
