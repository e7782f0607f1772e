import { connect, createServer, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

/**
 * A loopback TCP proxy in front of a server that cuts the first request whose request line
 * matches `path` after `cutAfter` response bytes, as a pulled cable would, and records the Range
 * header of every matching request.
 */
export async function startCuttingProxy(t: TestContext, target: URL, path: RegExp, cutAfter: number) {
  const ranges: string[] = [];
  let cut = false;
  const proxy = createServer((inbound) => {
    const outbound = connect(Number(target.port), target.hostname);
    let watched = false;
    let sent = 0;
    inbound.on('data', (chunk) => {
      const head = chunk.toString('latin1');
      if (path.test(head.split('\r\n', 1)[0]!)) {
        watched = true;
        ranges.push(/\r\nrange: ([^\r]+)/i.exec(head)?.[1] ?? 'none');
      }
      outbound.write(chunk);
    });
    outbound.on('data', (chunk) => {
      if (watched && !cut) {
        sent += chunk.length;
        if (sent > cutAfter) {
          cut = true;
          inbound.destroy();
          outbound.destroy();
          return;
        }
      }
      inbound.write(chunk);
    });
    const close = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on('error', close).on('close', close);
    outbound.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  return { url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, ranges };
}
