import { badRequest } from '../shared/errors.js';
import { normalizeMac } from '../shared/mac.js';
import { CsvError, parseCsv } from './csv.js';
import { TABLE_COLUMN } from './template.js';

export interface ParsedTable {
  keyColumn: 'serial' | 'mac';
  columns: string[];
  rows: Array<{ key: string; values: Record<string, string> }>;
}

/** How a serial is matched: case does not matter, surrounding spaces neither. */
export const serialKey = (serial: string) => serial.trim().toLowerCase();

/**
 * Reads a device table CSV: the first row names the columns (letters, digits, `_`), one of them
 * `serial` or `mac` (serial wins when both are there), which keys each row. Every refusal is one
 * sentence naming the row. Values are never put into a message: they may be secrets.
 */
export function parseDeviceTable(csv: string): ParsedTable {
  let records: string[][];
  try {
    records = parseCsv(csv);
  } catch (error) {
    if (error instanceof CsvError) throw badRequest(`the device table is not valid CSV: ${error.message}`);
    throw error;
  }
  const [header, ...body] = records;
  if (!header) throw badRequest('the device table is empty: its first row must name the columns');
  const columns = header.map((column) => column.trim());
  for (const column of columns) {
    if (!TABLE_COLUMN.test(column)) throw badRequest(`device table column '${column}' is not a usable name: use letters, digits and _ (it becomes {{table.${column}}})`);
  }
  const duplicate = columns.find((column, index) => columns.indexOf(column) !== index);
  if (duplicate) throw badRequest(`device table column '${duplicate}' appears twice`);
  const keyColumn = columns.includes('serial') ? 'serial' : columns.includes('mac') ? 'mac' : undefined;
  if (!keyColumn) throw badRequest('the device table needs a column named serial or mac, which says which device each row is for');
  const keyIndex = columns.indexOf(keyColumn);
  const keys = new Set<string>();
  const rows = body.map((record, index) => {
    const line = index + 2;
    if (record.length !== columns.length) throw badRequest(`device table row ${line} has ${record.length} fields; the header has ${columns.length}`);
    const raw = record[keyIndex]!.trim();
    if (raw === '') throw badRequest(`device table row ${line} has no ${keyColumn}`);
    let key: string;
    try {
      key = keyColumn === 'mac' ? normalizeMac(raw) : serialKey(raw);
    } catch {
      throw badRequest(`device table row ${line}: its mac is not a MAC address`);
    }
    if (keys.has(key)) throw badRequest(`device table row ${line}: ${keyColumn} ${key} has a row already`);
    keys.add(key);
    return { key, values: Object.fromEntries(columns.map((column, i) => [column, record[i]!])) };
  });
  return { keyColumn, columns, rows };
}
