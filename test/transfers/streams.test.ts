import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import pino from 'pino';
import type { BackupService } from '../../src/backups/service.js';
import type { ImageLibrary } from '../../src/images/library.js';
import type { JobService } from '../../src/jobs/service.js';
import type { JobRow } from '../../src/jobs/store.js';
import { createTransferRegistry } from '../../src/jobs/transfers.js';
import { createTransferService, type OutgoingBody } from '../../src/transfers/service.js';

// The transfer service keeps a deploy's streams flowing while the job's row is written
// asynchronously (issue 15): signs of life are not awaited per stream, and never pile up.

const JOB = { id: 7, client_reports: 1 } as JobRow;

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((yes, no) => ((resolve = yes), (reject = no)));
  return { promise, resolve, reject };
}

function service(jobs: Partial<JobService>) {
  const warnings: string[] = [];
  const log = pino({ level: 'silent' });
  log.warn = ((_details: unknown, message: string) => void warnings.push(message)) as unknown as typeof log.warn;
  const transfers = createTransferService({
    jobs: jobs as JobService,
    images: {} as ImageLibrary,
    backups: {} as BackupService,
    transfers: createTransferRegistry({ now: () => 0 }),
    log,
  });
  return { transfers, warnings };
}

/** A file body that closes when told to, on a socket that has written `bytesWritten`. */
function body(size: number, socket: { bytesWritten: number } | null = null) {
  const stream = Object.assign(new EventEmitter(), { destroy: () => undefined });
  return { stream, socket, range: { start: 0, end: size - 1, size } } as unknown as OutgoingBody & { stream: EventEmitter };
}

test('closing streams touch their job once while a touch is on its way, and again after it', async () => {
  const touches: Array<{ resolve(): void }> = [];
  const { transfers } = service({
    touch: () => {
      const touch = deferred<void>();
      touches.push(touch);
      return touch.promise.then(() => true);
    },
  });
  const chunks = Array.from({ length: 5 }, () => body(100));
  for (const chunk of chunks) transfers.trackStream(JOB, chunk, 'chunks');
  for (const chunk of chunks) chunk.stream.emit('close');
  assert.equal(touches.length, 1, 'one touch for five closes while it is pending');
  touches[0]!.resolve();
  await tick();
  const next = body(100);
  transfers.trackStream(JOB, next, 'chunks');
  next.stream.emit('close');
  assert.equal(touches.length, 2);
  touches[1]!.resolve();
});

test('a touch that fails is logged, and the next close tries again', async () => {
  let calls = 0;
  const { transfers, warnings } = service({
    touch: async () => {
      calls++;
      throw new Error('database is locked');
    },
  });
  for (let n = 0; n < 2; n++) {
    const chunk = body(100);
    transfers.trackStream(JOB, chunk, 'chunks');
    chunk.stream.emit('close');
    await tick();
  }
  assert.equal(calls, 2);
  assert.deepEqual(warnings, ['could not note that bytes moved for the job', 'could not note that bytes moved for the job']);
});

test("a silent client's byte count under way lands before the image is noted as sent", async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const order: string[] = [];
  const reported = deferred<JobRow>();
  const sent = deferred();
  const { transfers } = service({
    touch: async () => true,
    get: async () => ({ ...JOB, client_reports: 0 }),
    reportProgress: async (_job, bytes, phase) => {
      order.push(`${phase} ${bytes}`);
      return reported.promise;
    },
    imageSent: async () => {
      order.push('sent');
      sent.resolve();
    },
  });
  const socket = { bytesWritten: 0 };
  const image = body(1000, socket);
  transfers.trackStream({ ...JOB, client_reports: 0 }, image, 'image');
  socket.bytesWritten = 400;
  t.mock.timers.tick(2_000);
  await tick();
  image.stream.emit('close');
  await tick();
  assert.deepEqual(order, ['sending 400'], 'the end waits for the report under way');
  reported.resolve({ ...JOB });
  await sent.promise;
  assert.deepEqual(order, ['sending 400', 'sent']);
  t.mock.timers.tick(10_000);
  await tick();
  assert.deepEqual(order, ['sending 400', 'sent'], 'no count after the close');
});
