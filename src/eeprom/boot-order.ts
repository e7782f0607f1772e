/**
 * BOOT_ORDER of the Raspberry Pi 4/CM4 bootloader EEPROM: one hex nibble per boot mode, tried
 * from the RIGHT. 0xf12 = network (2), then SD/eMMC (1), then restart (f): network first.
 * 0x21 = SD/eMMC first, then network: it netboots only when the eMMC does not boot.
 * https://www.raspberrypi.com/documentation/computers/raspberry-pi.html#BOOT_ORDER
 */
export const BOOT_MODES: Record<string, string> = {
  '0': 'SD card detect',
  '1': 'SD card / eMMC',
  '2': 'network',
  '3': 'RPIBOOT (USB device boot)',
  '4': 'USB mass storage',
  '5': 'CM4 USB-C mass storage',
  '6': 'NVMe',
  '7': 'HTTP',
  e: 'stop',
  f: 'restart from the first mode',
};

export class BootOrderError extends Error {
  override name = 'BootOrderError';
}

/** `0xf12`, `F12` or `0xF12` → `0xf12`; anything else explains what a boot order is. */
export function parseBootOrder(text: string): string {
  const hex = text.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{1,8}$/.test(hex)) {
    throw new BootOrderError(`'${text}' is not a boot order: expected up to 8 hex digits like 0xf12 (network first) or 0x21 (eMMC first)`);
  }
  const unknown = [...hex].find((nibble) => !(nibble in BOOT_MODES));
  if (unknown) throw new BootOrderError(`boot order ${text} has the mode ${unknown}, which the bootloader does not know`);
  return `0x${hex}`;
}

/** `0xf12` → "network, then SD card / eMMC, then restart from the first mode". */
export function describeBootOrder(order: string): string {
  return [...order.replace(/^0x/, '')]
    .reverse()
    .map((nibble) => BOOT_MODES[nibble])
    .join(', then ');
}
