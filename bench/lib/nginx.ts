import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import type { Lab } from './netns.js';
import { childPids, cpuSeconds, run, sleep, startProcess, stopProcess } from './proc.js';

export const NGINX_PORT = 8080;

export interface Nginx {
  pid: number;
  /** CPU seconds of the master and its workers so far. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/**
 * Debian's nginx serving one directory as a static file server, with the settings a packaged
 * nginx ships (sendfile, tcp_nopush, one worker per core, no access log), in the foreground
 * so that its master's PID is ours.
 */
export async function startNginx(lab: Lab, options: { nginx: string; root: string; runDir: string; probe: string; cleanup: Cleanup }): Promise<Nginx> {
  const prefix = join(options.runDir, 'nginx');
  mkdirSync(prefix, { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
user root root;
worker_processes auto;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen ${NGINX_PORT};
    root ${options.root};
  }
}
`,
  );
  const [ip, ...exec] = lab.exec(lab.serverNs);
  const child = startProcess(ip!, [...exec, options.nginx, '-c', conf, '-p', prefix, '-e', join(prefix, 'error.log')], { stdio: 'ignore' });
  const stop = options.cleanup.add('nginx', () => stopProcess(child, 5000));
  const probeUrl = `http://127.0.0.1:${NGINX_PORT}/${options.probe}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode} (see ${prefix}/error.log)`);
    const probe = await run(ip!, [...exec, 'curl', '-sf', '-o', '/dev/null', '-r', '0-0', '--max-time', '2', probeUrl], { timeoutMs: 5000, check: false });
    if (probe.code === 0) break;
    if (Date.now() > deadline) throw new Error(`nginx did not serve ${probeUrl} within 20 s`);
    await sleep(100);
  }
  const pid = child.pid!;
  return {
    pid,
    cpuSeconds: () => [pid, ...childPids(pid)].reduce((sum, each) => sum + cpuSeconds(each), 0),
    stop,
  };
}
