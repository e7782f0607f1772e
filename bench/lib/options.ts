export const BENCHMARKS = ['deploy', 'serving', 'backup', 'polls', 'line', 'many', 'copies'] as const;
export type BenchmarkName = (typeof BENCHMARKS)[number];

export interface Options {
  only: BenchmarkName[];
  repeat: number;
  quick: boolean;
  keep: boolean;
  /** Devices that deploy at once in the `many` benchmark. */
  devices: number;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [--only NAME[,NAME]] [--repeat N] [--quick] [--keep] [--devices N]

  --only NAME   run only these benchmarks: ${BENCHMARKS.join(', ')}
  --repeat N    measurements per case, the median is reported (default 3; 1 with --quick)
  --quick       small sizes (256 MiB image, 200 long-polls): a smoke run, not numbers to quote
  --keep        keep bench/.cache (the built test image) for the next run
  --devices N   devices deploying at once in the many benchmark (default 6)

Needs root (network namespaces, tc, dropping the page cache) and the Debian packages that
scripts/install-bench-deps.sh installs. Prints a markdown table and writes bench/results/latest.md.`;

export class UsageError extends Error {}

export function parseOptions(argv: string[]): Options {
  const options: Options = { only: [...BENCHMARKS], repeat: 0, quick: false, keep: false, devices: 6, help: false };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const next = inline ?? argv[++index];
      if (next === undefined) throw new UsageError(`${flag} needs a value.`);
      return next;
    };
    switch (flag) {
      case '--only': {
        const names = value().split(',').filter(Boolean);
        const unknown = names.filter((name) => !(BENCHMARKS as readonly string[]).includes(name));
        if (unknown.length || !names.length) throw new UsageError(`Unknown benchmark '${unknown.join(',')}': expected ${BENCHMARKS.join(', ')}.`);
        options.only = BENCHMARKS.filter((name) => names.includes(name));
        break;
      }
      case '--repeat': {
        const text = value();
        if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 50) throw new UsageError(`Invalid --repeat '${text}': expected a whole number from 1 to 50.`);
        options.repeat = Number(text);
        break;
      }
      case '--devices': {
        const text = value();
        if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 64) throw new UsageError(`Invalid --devices '${text}': expected a whole number from 1 to 64.`);
        options.devices = Number(text);
        break;
      }
      case '--quick':
        options.quick = true;
        break;
      case '--keep':
        options.keep = true;
        break;
      case '--help':
      case '-h':
        options.help = true;
        break;
      default:
        throw new UsageError(`Unknown option '${arg}' (see --help).`);
    }
  }
  if (options.repeat === 0) options.repeat = options.quick ? 1 : 3;
  return options;
}
