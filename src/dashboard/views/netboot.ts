import type { DeviceView } from '../../devices/service.js';
import type { Lease } from '../../netboot/leases.js';
import type { NetbootStatus } from '../../netboot/service.js';
import { timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

export function netbootPage(status: NetbootStatus, leases: Lease[], devices: DeviceView[]): SafeHtml {
  if (!status.enabled) {
    return html`<h1>Netboot</h1>
<div class="empty">
  <p>Netboot is off: this server does not run DHCP or TFTP. Start it with the provisioning LAN's interface, e.g.</p>
  <pre><code>npx cm4prov serve --netboot-interface eth1 --netboot-address 10.20.50.1/24 --dhcp-range 10.20.50.100,10.20.50.200</code></pre>
  <p>(or <code>--dhcp-proxy</code> when the LAN already has a DHCP server). See <code>lxc/NETWORK-BOOT-LXC.md</code>.</p>
</div>`;
  }
  const dnsmasq = status.dnsmasq;
  const known = new Map(devices.map((device) => [device.mac, device]));
  return html`<h1>Netboot</h1>
<section aria-labelledby="dnsmasq-heading">
  <h2 id="dnsmasq-heading">DHCP and TFTP (dnsmasq)</h2>
  <dl class="status-list" id="netboot-status">
    <dt>dnsmasq</dt>
    <dd>${dnsmasq
      ? html`<span class="badge badge-${dnsmasq.state === 'running' ? 'ok' : 'failed'}">${dnsmasq.state}</span>
          ${dnsmasq.pid ? `pid ${dnsmasq.pid}` : ''} · since ${timestamp(dnsmasq.since)} · ${dnsmasq.restarts} restarts${dnsmasq.last_exit ? ` · last exit: ${dnsmasq.last_exit}` : ''}`
      : 'run by the system (external mode): the server wrote its config'}</dd>
    <dt>Interface</dt><dd>${status.interface}: ${status.address} in ${status.subnet}</dd>
    <dt>Addresses</dt><dd>${status.proxy ? 'proxy DHCP: another server hands them out' : status.range}</dd>
    <dt>Other hosts</dt><dd>${status.non_pi_clients === 'ignore' ? 'ignored (only Raspberry Pis are answered)' : 'get plain DHCP, no boot offer'}</dd>
    <dt>TFTP root</dt><dd><code>${status.tftp_root}</code></dd>
    <dt>Config</dt><dd><code>${status.config_file}</code></dd>
  </dl>
  ${dnsmasq && dnsmasq.state !== 'running' && dnsmasq.last_output.length
    ? html`<h3>dnsmasq said</h3><pre class="log">${dnsmasq.last_output.join('\n')}</pre>`
    : ''}
</section>
<section aria-labelledby="leases-heading">
  <h2 id="leases-heading">DHCP leases</h2>
  <div class="table-wrap">
    <table class="leases">
      <thead><tr><th scope="col">MAC</th><th scope="col">IP</th><th scope="col">Device</th><th scope="col">Lease ends</th></tr></thead>
      <tbody>
        ${leases.map((lease) => {
          const device = known.get(lease.mac);
          return html`<tr>
            <th scope="row" data-label="MAC"><code>${lease.mac}</code></th>
            <td data-label="IP">${lease.ip}</td>
            <td data-label="Device">${device ? html`${device.netboot.stage ?? 'known'}${device.registered ? '' : ', no client yet'}` : html`<span class="muted">not a Raspberry Pi${lease.hostname ? ` (${lease.hostname})` : ''}</span>`}</td>
            <td data-label="Lease ends">${timestamp(lease.expires_at)}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </div>
  ${leases.length ? '' : html`<p class="empty">No leases yet.</p>`}
</section>`;
}
