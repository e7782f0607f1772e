import { CliError, EXIT } from './errors.js';

/**
 * Reads a secret: on a terminal, prompts twice without echo; otherwise takes the first line of
 * stdin (so `echo "$PASSWORD" | cm4prov admin password` works in scripts).
 */
export async function readSecret(prompt: string, confirmPrompt: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) {
    let text = '';
    for await (const chunk of input) text += chunk;
    return text.split(/\r?\n/)[0] ?? '';
  }
  const first = await promptHidden(prompt);
  const second = await promptHidden(confirmPrompt);
  if (first !== second) throw new CliError('the two passwords differ; nothing changed', EXIT.usage);
  return first;
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const input = process.stdin;
    process.stderr.write(prompt);
    input.setRawMode(true);
    input.resume();
    input.setEncoding('utf8');
    let value = '';
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') {
          finish();
          resolve(value);
          return;
        }
        if (char === '\u0003') {
          finish();
          reject(new CliError('cancelled', EXIT.usage));
          return;
        }
        if (char === '\u007f' || char === '\b') value = value.slice(0, -1);
        else value += char;
      }
    };
    const finish = () => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
    };
    input.on('data', onData);
  });
}
