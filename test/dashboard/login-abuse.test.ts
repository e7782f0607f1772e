import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_LOGIN_LIMITS } from '../../src/admin/login-throttle.js';
import { addImage, MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const PASSWORD = 'provision-all-the-things';

/** A clock that moves only when the test says: back-off and lock-out windows never pass by themselves. */
function manualClock() {
  let now = Date.parse('2025-03-01T08:00:00Z');
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** POST /login as a browser form would, from `from` (any 127.0.0.0/8 address is this host). */
function postLogin(server: TestServer, fields: Record<string, string>, options: { from?: string; agent?: Agent } = {}): Promise<Answer> {
  const body = new URLSearchParams(fields).toString();
  return new Promise((resolve, reject) => {
    const url = new URL('/login', server.url);
    const req = request(
      url,
      {
        method: 'POST',
        localAddress: options.from ?? '127.0.0.1',
        agent: options.agent ?? false,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const alertText = (answer: Answer) => /<p id="login-error" class="form-error" role="alert">([^<]*)<\/p>/.exec(answer.body)?.[1];

test('a wrong password is answered after its back-off; attempts sent meanwhile get a 429 with Retry-After and are never hashed', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock });
  const { passwords } = server.server.services;

  const wrong = await postLogin(server, { password: 'guess-0001' }, { from: '127.0.0.11' });
  assert.equal(wrong.status, 401);
  assert.equal(alertText(wrong), 'Wrong password. Try again.');
  assert.match(wrong.body, /aria-invalid="true"/);
  assert.equal(passwords.stats().checks, 1);

  const early = await postLogin(server, { password: PASSWORD }, { from: '127.0.0.11' });
  assert.equal(early.status, 429);
  assert.equal(early.headers['retry-after'], '1');
  assert.equal(alertText(early), 'Too many attempts; try again in 1 s.');
  assert.doesNotMatch(early.body, /aria-invalid/, 'the password was not judged');
  assert.equal(passwords.stats().checks, 1, 'refused before hashing');

  clock.advance(500);
  const right = await postLogin(server, { password: PASSWORD }, { from: '127.0.0.11' });
  assert.equal(right.status, 303);
  assert.equal(passwords.stats().checks, 2);

  const burst = await Promise.all(Array.from({ length: 6 }, () => postLogin(server, { password: 'guess-0002' }, { from: '127.0.0.12' })));
  assert.deepEqual(burst.map((answer) => answer.status).sort(), [401, 429, 429, 429, 429, 429], 'one attempt per address at a time');
  assert.ok(burst.filter((answer) => answer.status === 429).every((answer) => /^Another login attempt from your address is being checked; try again in 1 s\.$|^Too many attempts/.test(alertText(answer)!)));
  assert.equal(passwords.stats().checks, 3, 'one hash for the six');
});

test('ten wrong passwords lock an address out for 15 minutes, the page says so, and other addresses are not affected', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock });
  const { loginThrottle, passwords } = server.server.services;
  const from = '127.0.0.13';
  for (let i = 1; i < DEFAULT_LOGIN_LIMITS.failuresBeforeLockout; i++) loginThrottle.failed(from);
  clock.advance(8_000);

  const tenth = await postLogin(server, { password: 'guess-0010' }, { from });
  assert.equal(tenth.status, 401);
  assert.equal(alertText(tenth), 'Wrong password. Too many wrong passwords from your address; try again in 15 min.');
  assert.equal(tenth.headers['retry-after'], '900');

  const checks = passwords.stats().checks;
  const locked = await postLogin(server, { password: PASSWORD }, { from });
  assert.equal(locked.status, 429, 'even the right password waits out the lock-out');
  assert.equal(alertText(locked), 'Too many wrong passwords from your address; try again in 15 min.');
  assert.equal(passwords.stats().checks, checks, 'and is not hashed');
  assert.equal((await postLogin(server, { password: PASSWORD }, { from: '127.0.0.14' })).status, 303, 'another address logs in');

  clock.advance(14 * 60_000);
  assert.match(alertText(await postLogin(server, { password: PASSWORD }, { from }))!, /try again in 1 min\.$/);
  clock.advance(60_000);
  assert.equal((await postLogin(server, { password: PASSWORD }, { from })).status, 303, 'after 15 minutes it may log in');
});

test('failed guesses over all addresses are capped per minute: beyond the cap every address waits', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock });
  const { loginThrottle } = server.server.services;
  for (let i = 1; i < DEFAULT_LOGIN_LIMITS.globalFailuresPerMinute; i++) loginThrottle.failed(`10.20.50.${i}`);
  assert.equal((await postLogin(server, { password: 'guess-0030' }, { from: '127.0.0.15' })).status, 401, 'the 30th guess of the minute is checked');

  const refused = await postLogin(server, { password: PASSWORD }, { from: '127.0.0.16' });
  assert.equal(refused.status, 429);
  assert.equal(alertText(refused), 'Too many failed logins on this server; try again in 1 min.');
  assert.equal(refused.headers['retry-after'], '60');
  clock.advance(60_000);
  assert.equal((await postLogin(server, { password: PASSWORD }, { from: '127.0.0.16' })).status, 303, 'a minute later');
});

test('300 parallel wrong logins from 300 addresses: an image download completes meanwhile, and at most 30 passwords are hashed', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock: manualClock() });
  await registerDevice(server);
  const image = await addImage(t, server, 'raspios', 64 * 1024 * 1024, { makeDefault: true });
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const order = await poll(server);

  const { passwords } = server.server.services;
  let mostHashing = 0;
  const sampler = setInterval(() => (mostHashing = Math.max(mostHashing, passwords.stats().running)), 5);
  t.after(() => clearInterval(sampler));
  const statuses = new Map<number, number>();
  let answers = 0;
  let flooding = true;
  const workers = Array.from({ length: 300 }, async (_, i) => {
    const from = `127.0.${10 + Math.floor(i / 200)}.${(i % 200) + 1}`;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let n = 0; flooding; n++) {
        const answer = await postLogin(server, { password: `wrong-${i}-${n}` }, { from, agent });
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        answers += 1;
        await sleep(20);
      }
    } finally {
      agent.destroy();
    }
  });
  await waitFor('every flooder to have an answer', () => answers >= 300, 60_000);

  const before = answers;
  const response = await fetch(order.url);
  assert.equal(response.status, 200);
  const hash = createHash('sha256');
  for await (const chunk of response.body!) hash.update(chunk);
  const during = answers - before;
  flooding = false;
  await Promise.all(workers);

  assert.equal(hash.digest('hex'), image.sha256, 'the whole image arrived');
  assert.ok(during > 0, 'the flood went on during the download');
  assert.deepEqual([...statuses.keys()].filter((status) => ![401, 429, 503].includes(status)), [], `answers: ${JSON.stringify([...statuses])}`);
  const { checks } = passwords.stats();
  assert.ok(checks >= 1 && checks <= DEFAULT_LOGIN_LIMITS.globalFailuresPerMinute, `${checks} passwords hashed`);
  assert.ok(mostHashing <= 1, `${mostHashing} hashes at once: one at most, so the other threadpool threads stay free for file I/O`);
});

test('the page after a login is always on this site: next= with a backslash, //, a scheme or a control character goes to /', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const origin = new URL(server.url).origin;
  const cases: Array<[string, string]> = [
    ['/\\evil.example', '/'],
    ['//evil', '/'],
    ['/%5Cevil', '/%5Cevil'],
    ['https://evil', '/'],
    ['/\t/evil', '/'],
    ['/\r\n/evil', '/'],
    ['javascript:alert(1)', '/'],
    ['/history?device=dc:a6:32:00:00:01', '/history?device=dc:a6:32:00:00:01'],
  ];
  for (const [next, expected] of cases) {
    const answer = await postLogin(server, { password: PASSWORD, next });
    assert.equal(answer.status, 303, JSON.stringify(next));
    const location = String(answer.headers.location);
    assert.equal(location, expected, JSON.stringify(next));
    assert.equal(new URL(location, server.url).origin, origin);

    const page = await fetch(`${server.url}/login?next=${encodeURIComponent(next)}`);
    assert.match(await page.text(), new RegExp(`name="next" value="${expected.replace(/[?]/g, '\\$&')}"`), JSON.stringify(next));
  }
});

test('a cookie that is not valid percent-encoding counts as no cookie: 401 on the admin API, normal answers elsewhere', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await registerDevice(server);
  const cookie = { cookie: 'cm4prov_session=%zz' };
  const admin = await server.device('GET', '/api/devices', undefined, cookie);
  assert.equal(admin.status, 401);
  assert.match(admin.body.message, /needs "Authorization: Bearer <token>"/);
  assert.equal((await server.device('GET', `/api/device-action-poll?mac=${MAC}`, undefined, cookie)).status, 200);
  assert.equal((await server.device('GET', '/login', undefined, cookie)).status, 200);
  const page = await fetch(`${server.url}/`, { headers: cookie, redirect: 'manual' });
  assert.equal(page.status, 303);
  assert.equal(page.headers.get('location'), '/login?next=%2F');
});
