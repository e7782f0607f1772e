/**
 * A small RFC 4180 CSV reader for the device table: fields separated by commas, optionally in
 * double quotes ("" inside quotes is one "), records ended by CRLF or LF. Enough for what a
 * spreadsheet exports; no other dialects.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; // a byte-order mark from a spreadsheet
  const endField = () => {
    row.push(field);
    field = '';
  };
  const endRow = () => {
    endField();
    if (!(row.length === 1 && row[0] === '')) rows.push(row); // blank lines are skipped
    row = [];
  };
  for (; i < text.length; i++) {
    const char = text[i]!;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (char === '"') {
        quoted = false;
      } else {
        field += char;
      }
    } else if (char === '"' && field === '') {
      quoted = true;
    } else if (char === ',') {
      endField();
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && text[i + 1] === '\n') i++;
      endRow();
    } else {
      field += char;
    }
  }
  if (quoted) throw new CsvError('a quoted field is not closed before the end of the file');
  if (field !== '' || row.length > 0) endRow();
  return rows;
}

export class CsvError extends Error {
  override name = 'CsvError';
}
