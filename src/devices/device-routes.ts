import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { baseUrlFor } from '../http/base-url.js';
import { replyAs } from '../http/reply-format.js';
import { pollAnswer } from '../jobs/device-answer.js';
import type { JobService } from '../jobs/service.js';
import { normalizeMac } from '../shared/mac.js';
import { plainAddress } from '../shared/network.js';
import type { IdentityCheck } from './identity.js';
import { PollQuery, RegisterBody, RegisterQuery } from './schemas.js';
import type { DeviceService } from './service.js';

export interface DeviceRoutesOptions {
  devices: DeviceService;
  jobs: JobService;
  /** Refuses a MAC speaking from an address that its DHCP lease does not give it. */
  identity: IdentityCheck;
  publicUrl: string | undefined;
  /** Long-poll length used when the device does not say (`wait` absent). */
  defaultWaitSeconds?: number;
}

/** The device-facing contract: `POST /api/register-device` and `GET /api/device-action-poll`. */
export const deviceRoutes: FastifyPluginAsyncTypebox<DeviceRoutesOptions> = async (app, { devices, jobs, identity, publicUrl }) => {
  app.post('/api/register-device', { schema: { body: RegisterBody, querystring: RegisterQuery } }, async (request, reply) => {
    identity(normalizeMac(request.body.mac), request.ip);
    const device = await devices.register(request.body, request.ip, baseUrlFor(request, undefined));
    const base = baseUrlFor(request, publicUrl);
    return replyAs(reply, request.query.format, {
      ok: true,
      mac: device.mac,
      ip: device.ip,
      poll_url: `${base}/api/device-action-poll?mac=${device.mac}`,
    });
  });

  app.get('/api/device-action-poll', { schema: { querystring: PollQuery } }, async (request, reply) => {
    const { mac, format, wait = 0 } = request.query;
    identity(normalizeMac(mac), request.ip);
    const features = new Set((request.query.features ?? '').split(',').map((feature) => feature.trim()).filter(Boolean));
    // The poll ends early if the device hangs up, so no job is handed to a closed socket.
    // Listened for before the first await: a close during it must not go unseen.
    const hangUp = new AbortController();
    reply.raw.on('close', () => hangUp.abort());
    const device = await devices.seen(mac, request.ip, baseUrlFor(request, undefined));
    // A poll that says what the client can do comes from a client that reports a result.
    const taker = { ip: plainAddress(request.ip), reports: request.query.features !== undefined };
    const outcome = await jobs.poll(device.mac, wait * 1000, hangUp.signal, features, taker);
    if (hangUp.signal.aborted && outcome.action !== 'none') {
      request.log.warn({ mac: device.mac, job: outcome.job.id }, 'device hung up as its job was handed out');
    } else if (hangUp.signal.aborted) {
      devices.pollHungUp(device.mac);
    }
    return replyAs(reply, format, pollAnswer(outcome, baseUrlFor(request, publicUrl)));
  });
};
