/**
 * A DHCP client shaped like the Raspberry Pi 4 / CM4 bootloader (or a plain PC), for tests.
 * Run inside a device namespace:  node --import tsx dhcp-probe.ts MAC pi|plain discover|lease
 * Prints one JSON line: the OFFER (and for `lease`, the ACK) with its options in hex.
 * Option layout from RFC 2131/2132 and the Pi bootloader's DISCOVER (../../../shared/NOTES.md).
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';

const [macText = '', flavour = 'pi', mode = 'discover'] = process.argv.slice(2);
const mac = Buffer.from(macText.replaceAll(':', ''), 'hex');
const xid = randomBytes(4);
const COOKIE = Buffer.from([99, 130, 83, 99]);

function option(code: number, value: Buffer | number[] | string): Buffer {
  const data = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
  return Buffer.concat([Buffer.from([code, data.length]), data]);
}

function packet(type: number, extra: Buffer[] = []): Buffer {
  const header = Buffer.alloc(236);
  header[0] = 1; // BOOTREQUEST
  header[1] = 1; // Ethernet
  header[2] = 6;
  xid.copy(header, 4);
  header.writeUInt16BE(0x8000, 10); // broadcast flag: we have no address to receive on
  mac.copy(header, 28);
  const options = [option(53, [type])];
  if (flavour === 'pi') {
    // Option 97: a GUID starting 0 + "RPi4", then board revision, MAC and serial bytes.
    const guid = Buffer.concat([Buffer.from([0]), Buffer.from('RPi4'), Buffer.from([0, 0x31, 0x41, 0x0d]), mac, Buffer.from([0x12, 0x34])]);
    options.push(option(60, 'PXEClient:Arch:00000:UNDI:002001'), option(93, [0, 0]), option(94, [1, 2, 1]), option(97, guid));
  } else {
    options.push(option(60, 'MSFT 5.0'));
  }
  options.push(option(55, [1, 3, 6, 43, 60, 66, 67]), ...extra);
  return Buffer.concat([header, COOKIE, ...options, Buffer.from([255])]);
}

interface Reply {
  type: number;
  yiaddr: string;
  siaddr: string;
  options: Record<string, string>;
}

function parse(data: Buffer): Reply | undefined {
  if (data[0] !== 2 || !data.subarray(4, 8).equals(xid) || !data.subarray(236, 240).equals(COOKIE)) return undefined;
  const options: Record<string, string> = {};
  for (let i = 240; i < data.length; ) {
    const code = data[i]!;
    if (code === 255) break;
    if (code === 0) {
      i += 1;
      continue;
    }
    const length = data[i + 1]!;
    options[code] = data.subarray(i + 2, i + 2 + length).toString('hex');
    i += 2 + length;
  }
  const ip = (offset: number) => [...data.subarray(offset, offset + 4)].join('.');
  return { type: parseInt(options[53] ?? '0', 16), yiaddr: ip(16), siaddr: ip(20), options };
}

const socket = createSocket({ type: 'udp4', reuseAddr: true });
const result: { offer: Reply | null; ack: Reply | null } = { offer: null, ack: null };
/** What is sent until its answer comes: a client retransmits, as RFC 2131 §4.1 has it. */
let pending: Buffer | undefined;
const send = (message: Buffer) => {
  pending = message;
  socket.send(message, 67, '255.255.255.255');
};
// A server that is just starting (or restarting) may miss the first one: resend every 500 ms.
const resend = setInterval(() => pending && socket.send(pending, 67, '255.255.255.255'), 500);
const finish = () => {
  clearInterval(resend);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  socket.close();
};
const timer = setTimeout(finish, 8000);

socket.on('message', (data) => {
  const reply = parse(data);
  if (!reply) return;
  if (reply.type === 2 && !result.offer) {
    result.offer = reply;
    if (mode !== 'lease') {
      clearTimeout(timer);
      finish();
      return;
    }
    const ip = Buffer.from(reply.yiaddr.split('.').map(Number));
    const server = Buffer.from((reply.options[54] ?? '').match(/../g)!.map((hex) => parseInt(hex, 16)));
    send(packet(3, [option(50, ip), option(54, server)]));
  } else if (reply.type === 5) {
    result.ack = reply;
    clearTimeout(timer);
    finish();
  }
});
socket.bind(68, () => {
  socket.setBroadcast(true);
  send(packet(1));
});
