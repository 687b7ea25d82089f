/** The printed tables of the results. */
import type { Noise } from './machine';
import { METRICS, type Figures, type Metric, type ScenarioResult } from './report';
import { ratio } from './stats';
import { formatVerdicts, summarise } from './verdict';

/** Share of the CPU taken by others from which a measurement is flagged as noisy. */
export const NOISY = 0.1;

/** "other processes used 12% of the CPU" and the like, or '' when unknown. */
export function describeNoise(noise: Noise | undefined): string {
  if (noise?.otherProcesses === null || noise?.otherProcesses === undefined) return '';
  const steal = noise.steal !== null && noise.steal >= 0.005 ? `, the hypervisor stole ${percent(noise.steal)}` : '';
  const warning = noise.otherProcesses + (noise.steal ?? 0) >= NOISY ? ': NOISY, these figures are not reliable' : '';
  return `other processes used ${percent(noise.otherProcesses)} of the CPU meanwhile${steal}${warning}`;
}

/** Other processes' share of the CPU, for a table cell. */
function share(noise: Noise): string {
  return noise.otherProcesses === null ? '-' : percent(noise.otherProcesses + (noise.steal ?? 0));
}

function percent(share: number): string {
  return `${(share * 100).toFixed(share < 0.1 ? 1 : 0)}%`;
}

const HEADERS: Record<Metric, string> = {
  p50Ms: 'p50',
  p95Ms: 'p95',
  p99Ms: 'p99',
  maxMs: 'max',
  wallMs: 'wall',
  perSecond: 'runs/s',
};

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return '-';
  if (value < 1) return `${value.toFixed(3)} ms`;
  if (value < 10) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${value.toFixed(1)} ms`;
  return `${Math.round(value).toLocaleString('en-US')} ms`;
}

function perSecond(value: number | null | undefined): string {
  if (value === null || value === undefined) return '-';
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
}

function times(value: number | null | undefined): string {
  if (value === null || value === undefined) return '-';
  return `${value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)}x`;
}

function cell(metric: Metric, value: number | null | undefined): string {
  return metric === 'perSecond' ? perSecond(value) : ms(value);
}

/** Left column left-aligned, the others right-aligned, two spaces apart. */
export function table(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((text, i) => (widths[i] = Math.max(widths[i] ?? 0, text.length)));
  return rows
    .map((row) => indent + row.map((text, i) => (i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!))).join('  '))
    .join('\n');
}

function failed(figures: Figures): string {
  return `${figures.failures}/${figures.runs}`;
}

/** The printed table of a scenario: figures, ratios to raw piscina and to the floor. */
export function formatScenario(result: ScenarioResult): string {
  const lines: string[] = [];
  // `ok` says only that every run ended as it should; the targets say how fast.
  const verdict = result.ok ? 'ok: every run ended as it should' : 'FAILED: some runs did not end as they should';
  lines.push(`${result.id}  ${result.title}  [${verdict}${summarise(result.verdicts ?? [])}]`);
  if (result.error !== null) lines.push(`  error: ${result.error}`);
  for (const [label, warm] of [['orchestrator', result.warmUp.orchestrator], ['raw piscina', result.warmUp.baseline], ['plain BullMQ', result.warmUp.plainBullmq]] as const) {
    if (warm !== undefined && warm.failures > 0) lines.push(`  warm-up of ${label}: ${warm.failures}/${warm.runs} runs failed, first: ${warm.firstError}`);
  }
  lines.push(`  orchestrator: ${result.orchestrator.description}`);
  lines.push(`  raw piscina:  ${result.baseline.description}`);
  if (result.baseline.candidates.length > 1) {
    lines.push(`    ${result.baseline.criterion}:`);
    for (const candidate of result.baseline.candidates) {
      const mark = candidate.chosen ? '*' : ' ';
      const failures = candidate.failures > 0 ? `, ${candidate.failures} failed` : '';
      lines.push(`    ${mark} ${candidate.description}: p95 ${ms(candidate.p95Ms)}, wall ${ms(candidate.wallMs)}${failures}`);
    }
  }
  if (result.plainBullmq !== undefined) lines.push(`  plain BullMQ: ${result.plainBullmq.description}`);
  if (result.floorMs !== null) lines.push(`  floor:        ${ms(result.floorMs)}, ${result.floorNote ?? ''}`);
  else lines.push('  floor:        none');
  const each = `${result.count} run${result.count === 1 ? '' : 's'} x ${result.iterations} iteration${result.iterations === 1 ? '' : 's'}`;
  lines.push(`  measured:     ${each} per contender, ${result.concurrency >= result.count ? 'all at once' : `${result.concurrency} at a time`}, interleaved`);

  const metrics = METRICS.filter((metric) => result.orchestrator[metric] !== null || result.baseline[metric] !== null);
  const rows: string[][] = [['', ...metrics.map((metric) => HEADERS[metric]), 'failed', "others' CPU"]];
  rows.push(['orchestrator', ...metrics.map((m) => cell(m, result.orchestrator[m])), failed(result.orchestrator), share(result.orchestrator.noise)]);
  rows.push(['raw piscina', ...metrics.map((m) => cell(m, result.baseline[m])), failed(result.baseline), share(result.baseline.noise)]);
  const plain = result.plainBullmq;
  if (plain !== undefined) rows.push(['plain BullMQ', ...metrics.map((m) => cell(m, plain[m])), failed(plain), share(plain.noise)]);
  rows.push(['orch / piscina', ...metrics.map((m) => times(result.ratios.toBaseline[m])), '', '']);
  if (plain !== undefined) rows.push(['orch / plain BullMQ', ...metrics.map((m) => times(result.toPlainBullmq?.[m])), '', '']);
  if (result.floorMs !== null) {
    const bound = (m: Metric, value: number | null | undefined): string => (result.floorBounds.includes(m) ? times(value) : '');
    rows.push(['orch / floor', ...metrics.map((m) => bound(m, result.ratios.toFloor.orchestrator[m])), '', '']);
    rows.push(['piscina / floor', ...metrics.map((m) => bound(m, result.ratios.toFloor.baseline[m])), '', '']);
  }
  lines.push('', table(rows));
  for (const [label, figures] of [['orchestrator', result.orchestrator], ['raw piscina', result.baseline], ['plain BullMQ', plain]] as const) {
    if (figures !== undefined && figures.firstError !== null) lines.push(`  first failure of ${label}: ${figures.firstError}`);
  }
  lines.push(...formatVerdicts(result.verdicts ?? []));

  if (result.recovery !== undefined) {
    const { orchestrator, baseline } = result.recovery;
    lines.push('', '  rejection -> next 1-node run completed:');
    const recovery: string[][] = [['', 'p50', 'p95', 'p99', 'max', 'failed']];
    for (const [label, figures] of [['orchestrator', orchestrator], ['raw piscina', baseline]] as const) {
      recovery.push([label, ms(figures.p50Ms), ms(figures.p95Ms), ms(figures.p99Ms), ms(figures.maxMs), failed(figures)]);
    }
    recovery.push(['orch / piscina', times(ratio(orchestrator.p50Ms, baseline.p50Ms)), times(ratio(orchestrator.p95Ms, baseline.p95Ms)), times(ratio(orchestrator.p99Ms, baseline.p99Ms)), times(ratio(orchestrator.maxMs, baseline.maxMs)), '']);
    lines.push(table(recovery));
  }
  if (result.baselineThreadExit !== undefined) {
    const exit = result.baselineThreadExit;
    const p50 = times(ratio(result.orchestrator.p50Ms, exit.p50Ms));
    const p95 = times(ratio(result.orchestrator.p95Ms, exit.p95Ms));
    lines.push(
      '',
      `  raw piscina rejects at once, before its thread is gone: the thread exited ${ms(exit.p50Ms)} (p50), ${ms(exit.p95Ms)} (p95) after the abort;`,
      `  the orchestrator rejects once the node has stopped: its rejection / piscina's thread exit = ${p50} (p50), ${p95} (p95)`,
    );
  }
  return lines.join('\n');
}
