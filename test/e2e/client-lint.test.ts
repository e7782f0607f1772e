import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { CLIENT_SCRIPT } from '../helpers/device-client.js';

test('the device client passes shellcheck as POSIX sh', () => {
  const result = spawnSync('shellcheck', ['--shell=sh', '--severity=info', CLIENT_SCRIPT], { encoding: 'utf8' });
  assert.equal(result.error, undefined, 'shellcheck is installed (scripts/install-test-deps.sh)');
  assert.equal(result.status, 0, result.stdout);
});

test('the device client parses under busybox ash', () => {
  execFileSync('busybox', ['sh', '-n', CLIENT_SCRIPT]);
});
