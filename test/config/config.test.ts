import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError, chooseConfigFile, loadConfig, readSettings } from '../../src/config.js';
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

test('with no --config or CM4PROV_CONFIG, the default settings file is read if it exists', (t) => {
  const dir = tempDir(t);
  const packaged = join(dir, 'config.json');
  writeFileSync(packaged, JSON.stringify({ port: 6001, 'data-dir': '/var/lib/cm4-provisioning' }));
  const config = loadConfig({ env: {}, defaultConfigFile: packaged });
  assert.equal(config.port, 6001);
  assert.equal(config.dataDir, '/var/lib/cm4-provisioning');
  assert.deepEqual(chooseConfigFile({ env: {}, defaultConfigFile: packaged }), { path: packaged, namedBy: packaged });

  const named = join(dir, 'other.json');
  writeFileSync(named, JSON.stringify({ port: 6002 }));
  assert.equal(loadConfig({ env: { CM4PROV_CONFIG: named }, defaultConfigFile: packaged }).port, 6002, 'CM4PROV_CONFIG wins');
  assert.equal(loadConfig({ env: {}, configFile: named, defaultConfigFile: packaged }).port, 6002, '--config wins');
  const absent = loadConfig({ env: {}, cwd: '/srv/x', defaultConfigFile: join(dir, 'missing.json') });
  assert.deepEqual([absent.port, absent.dataDir], [5000, '/srv/x/data'], 'a missing default file is no error');
});

test('readSettings tells where each setting came from, and checks only those asked for', (t) => {
  const file = join(tempDir(t), 'config.json');
  writeFileSync(file, JSON.stringify({ port: 6001, 'data-dir': 'srv-data', 'log-level': 'loud' }));
  const settings = readSettings({ flags: { host: '127.0.0.1' }, env: { CM4PROV_CONFIG: file }, cwd: '/srv/x' });
  assert.deepEqual(settings.get('host'), { value: '127.0.0.1', origin: 'from --host' });
  assert.deepEqual(settings.get('port'), { value: 6001, origin: `from CM4PROV_CONFIG=${file}` });
  assert.deepEqual(settings.get('dataDir'), { value: '/srv/x/srv-data', origin: `from CM4PROV_CONFIG=${file}` });
  assert.deepEqual(settings.get('tftpRoot'), { value: undefined, origin: 'the default' });
  assert.throws(() => settings.get('logLevel'), /^ConfigError: Invalid 'log-level' in .*config\.json: 'loud' is not one of/);
  const fromEnv = readSettings({ env: { CM4PROV_DATA_DIR: '/d', CM4PROV_CONFIG: file } });
  assert.deepEqual(fromEnv.get('dataDir'), { value: '/d', origin: 'from CM4PROV_DATA_DIR' });
});
