import { fmt } from './stats.js';
import type { Machine } from './machine.js';

/** One line of the results table. */
export interface Row {
  benchmark: string;
  measure: string;
  ours: string;
  baseline: string;
  ratio: string;
  goal: string;
  met: string;
}

/** What one benchmark hands back: its table rows and the raw numbers behind them. */
export interface Section {
  title: string;
  rows: Row[];
  details: string[];
}

export interface Goal {
  /** `max`: the ratio must be at most `value`; `min`: at least. */
  kind: 'max' | 'min';
  value: number;
}

/** A row comparing ours with a baseline through their ratio, checked against a goal if any. */
export function ratioRow(benchmark: string, measure: string, ours: string, baseline: string, ratio: number, goal?: Goal): Row {
  return {
    benchmark,
    measure,
    ours,
    baseline,
    ratio: Number.isFinite(ratio) ? fmt.ratio(ratio) : '–',
    goal: goal ? `${goal.kind === 'max' ? '≤' : '≥'} ${goal.value}×` : '–',
    met: goal ? verdict(goal.kind === 'max' ? ratio <= goal.value : ratio >= goal.value) : '–',
  };
}

export const verdict = (met: boolean) => (met ? '**yes**' : 'no');

const escape = (cell: string) => cell.replaceAll('|', '\\|');

export function renderReport(report: { date: string; command: string; seconds: number; machine: Machine; sections: Section[]; failures: string[]; notes: string[] }) {
  const { machine } = report;
  const lines = [
    '# cm4-provisioning benchmarks',
    '',
    `${report.date} · \`${report.command}\` · ${Math.floor(report.seconds / 60)} min ${Math.round(report.seconds % 60)} s`,
    '',
    '| machine | |',
    '| --- | --- |',
    `| CPU | ${machine.cpu}, ${machine.cores} cores |`,
    `| RAM | ${machine.ram} |`,
    `| OS, kernel | ${machine.os}, Linux ${machine.kernel} |`,
    `| disk | ${machine.disk} |`,
    `| code measured | ${machine.code} |`,
    `| load average (1 min) | ${machine.load} |`,
    `| other processes | ${machine.otherCpu} |`,
    `| tools | ${Object.entries(machine.versions).map(([name, version]) => `${name} ${escape(version)}`).join(', ')} |`,
    '',
    '## Results',
    '',
    'Ratio = ours ÷ baseline, both measured in this run (medians of the repetitions).',
    '',
    '| benchmark | measure | ours | baseline | ratio | goal | met |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...report.sections.flatMap((section) =>
      section.rows.map((row) => `| ${[row.benchmark, row.measure, row.ours, row.baseline, row.ratio, row.goal, row.met].map(escape).join(' | ')} |`),
    ),
    ...report.failures.map((failure) => `| ${escape(failure)} | failed | | | | | |`),
    '',
  ];
  if (report.notes.length) lines.push(...report.notes.map((note) => `- ${note}`), '');
  for (const section of report.sections) lines.push(`### ${section.title}`, '', ...section.details.map((line) => `- ${line}`), '');
  return lines.join('\n');
}
