import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { tempDir } from '../helpers/server.js';

test('defaults: port 5000, ./data, all interfaces', () => {
  const config = loadConfig({ env: {}, cwd: '/srv/x' });
  assert.equal(config.port, 5000);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.dataDir, '/srv/x/data');
  assert.equal(config.publicUrl, undefined);
  assert.deepEqual(config.deviceNetwork, []);
});

test('flags beat CM4PROV_* beat the config file beat defaults', (t) => {
  const file = join(tempDir(t), 'config.json');
  writeFileSync(file, JSON.stringify({ port: 6001, 'data-dir': '/from/file', publicUrl: 'http://10.20.50.1:5000/', 'device-network': ['10.20.50.0/24'] }));
  const config = loadConfig({ flags: { port: '6003' }, env: { CM4PROV_PORT: '6002', CM4PROV_HOST: '127.0.0.1' }, configFile: file });
  assert.equal(config.port, 6003);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.dataDir, resolve('/from/file'));
  assert.equal(config.publicUrl, 'http://10.20.50.1:5000');
  assert.deepEqual(config.deviceNetwork, ['10.20.50.0/24']);
  assert.equal(loadConfig({ env: { CM4PROV_PORT: '6002' }, configFile: file }).port, 6002);
  assert.equal(loadConfig({ env: { CM4PROV_CONFIG: file } }).port, 6001);
});

test('a bad setting stops start-up with one sentence naming it and its source', (t) => {
  const cases: Array<[Parameters<typeof loadConfig>[0], RegExp]> = [
    [{ flags: { port: 'abc' } }, /^Invalid --port: 'abc' is not a port/],
    [{ env: { CM4PROV_PORT: '70000' } }, /^Invalid CM4PROV_PORT: /],
    [{ flags: { publicUrl: 'ftp://x' } }, /^Invalid --public-url: .*http/],
    [{ flags: { deviceNetwork: '10.20.50.0/24,10.1.2.3/40' } }, /^Invalid --device-network: '10.1.2.3\/40' has a bad prefix length/],
    [{ flags: { host: 'bad host!' } }, /^Invalid --host/],
    [{ flags: { logLevel: 'loud' } }, /^Invalid --log-level/],
    [{ flags: { jobStallTimeout: '1' } }, /^Invalid --job-stall-timeout/],
  ];
  for (const [sources, pattern] of cases) {
    assert.throws(() => loadConfig({ env: {}, ...sources }), (error: unknown) => error instanceof ConfigError && pattern.test(error.message));
  }
  const file = join(tempDir(t), 'bad.json');
  writeFileSync(file, '{"prot": 1}');
  assert.throws(() => loadConfig({ env: {}, configFile: file }), /unknown setting 'prot'/);
  writeFileSync(file, '{not json');
  assert.throws(() => loadConfig({ env: {}, configFile: file }), /is not valid JSON/);
  assert.throws(() => loadConfig({ env: {}, configFile: '/nonexistent/x.json' }), /Cannot read config file/);
});
