/**
 * The picture of a report: one panel per scenario with the empirical distribution (CDF)
 * of per-run latency, orchestrator against raw piscina, on a log-scale time axis; the
 * floor as a dashed line; for S6, the recovery time dashed.
 */
import type { BenchReport, Figures, ScenarioResult } from './report';
import { NOISY } from './tables';

const COLUMNS = 2;
const PANEL_WIDTH = 640;
const PANEL_HEIGHT = 280;
const GAP = 16;
const HEADER = 64;
const PLOT = { left: 56, right: 20, bottom: 40 };
/** Where the legend starts, and its line height; the plot starts below it. */
const LEGEND_TOP = 38;
const LEGEND_LINE = 15;
const COLOURS = { orchestrator: '#1f6feb', baseline: '#d9480f', plainBullmq: '#7c3aed', floor: '#6b7280', grid: '#e5e7eb', text: '#111827' };

interface Line {
  readonly label: string;
  readonly colour: string;
  readonly dashed: boolean;
  readonly figures: Figures;
}

export function renderSvg(report: BenchReport): string {
  const panels = report.scenarios.filter((s) => s.orchestrator.distributionMs.length > 0 || s.baseline.distributionMs.length > 0);
  const rows = Math.max(1, Math.ceil(panels.length / COLUMNS));
  const width = COLUMNS * PANEL_WIDTH + (COLUMNS + 1) * GAP;
  const height = HEADER + rows * (PANEL_HEIGHT + GAP);
  const commit = report.commit === null ? 'no commit' : `commit ${report.commit.slice(0, 10)}${report.dirty ? ' (dirty)' : ''}`;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(GAP, 26, 'lukhas-orchestrator vs raw piscina (and plain BullMQ, over the backend): distribution of per-run latency (share of runs at or under a time; log scale)', 'font-size="16" font-weight="bold"'),
    text(
      GAP,
      48,
      `Node ${report.node}, ${report.cpu}, ${report.cores} cores, ${commit}, ${report.date}${report.quick ? ', --quick' : ''}`,
      `fill="${COLOURS.floor}"`,
    ),
  ];
  panels.forEach((scenario, i) => {
    const x = GAP + (i % COLUMNS) * (PANEL_WIDTH + GAP);
    const y = HEADER + Math.floor(i / COLUMNS) * (PANEL_HEIGHT + GAP);
    out.push(panel(scenario, x, y));
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function linesOf(scenario: ScenarioResult): Line[] {
  const lines: Line[] = [
    { label: 'orchestrator', colour: COLOURS.orchestrator, dashed: false, figures: scenario.orchestrator },
    { label: 'raw piscina', colour: COLOURS.baseline, dashed: false, figures: scenario.baseline },
  ];
  if (scenario.plainBullmq !== undefined) lines.push({ label: 'plain BullMQ', colour: COLOURS.plainBullmq, dashed: false, figures: scenario.plainBullmq });
  if (scenario.recovery !== undefined) {
    lines.push(
      { label: 'orchestrator, next run', colour: COLOURS.orchestrator, dashed: true, figures: scenario.recovery.orchestrator },
      { label: 'raw piscina, next run', colour: COLOURS.baseline, dashed: true, figures: scenario.recovery.baseline },
    );
  }
  return lines.filter((line) => line.figures.distributionMs.length > 0);
}

function panel(scenario: ScenarioResult, x: number, y: number): string {
  const lines = linesOf(scenario);
  const others = (scenario.noise?.otherProcesses ?? 0) + (scenario.noise?.steal ?? 0);
  const noisy = others >= NOISY ? others : null;
  const plot = {
    left: x + PLOT.left,
    right: x + PANEL_WIDTH - PLOT.right,
    top: y + LEGEND_TOP + (lines.length + (noisy === null ? 0 : 1)) * LEGEND_LINE + 4,
    bottom: y + PANEL_HEIGHT - PLOT.bottom,
  };
  const values = lines.flatMap((line) => line.figures.distributionMs).filter((v) => v > 0);
  if (scenario.floorMs !== null) values.push(scenario.floorMs);
  const lo = 10 ** Math.floor(Math.log10(Math.max(1e-3, Math.min(...values))));
  let hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  if (hi <= lo) hi = lo * 10;
  const xOf = (v: number): number =>
    plot.left + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (plot.right - plot.left);
  const yOf = (share: number): number => plot.bottom - share * (plot.bottom - plot.top);

  const out: string[] = [`<g>`];
  out.push(`<rect x="${x}" y="${y}" width="${PANEL_WIDTH}" height="${PANEL_HEIGHT}" fill="none" stroke="${COLOURS.grid}"/>`);
  const verdict = scenario.ok ? '' : '  [FAILED]';
  out.push(text(x + 10, y + 20, clip(`${scenario.id}  ${scenario.title}`, 84 - verdict.length) + verdict, 'font-weight="bold"'));
  if (noisy !== null) {
    const note = `noisy: other processes took ${Math.round(noisy * 100)}% of the CPU meanwhile`;
    out.push(text(x + 10, y + LEGEND_TOP + lines.length * LEGEND_LINE, note, `font-size="11" fill="${COLOURS.baseline}"`));
  }

  // Axes and grid.
  const decades = Math.round(Math.log10(hi / lo));
  for (let decade = lo; decade < hi * 1.001; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v > hi * 1.001) break;
      const gx = xOf(v);
      out.push(`<line x1="${f(gx)}" y1="${plot.top}" x2="${f(gx)}" y2="${plot.bottom}" stroke="${COLOURS.grid}"/>`);
      if (m === 1 || decades <= 2) out.push(text(gx, plot.bottom + 14, tick(v), 'text-anchor="middle" font-size="10"'));
    }
  }
  for (const [share, label] of [[0, '0%'], [0.5, '50%'], [0.95, '95%'], [1, '']] as const) {
    out.push(`<line x1="${plot.left}" y1="${f(yOf(share))}" x2="${plot.right}" y2="${f(yOf(share))}" stroke="${COLOURS.grid}"/>`);
    if (label !== '') out.push(text(plot.left - 6, yOf(share) + 4, label, 'text-anchor="end" font-size="10"'));
  }
  out.push(`<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="${COLOURS.text}"/>`);
  out.push(`<line x1="${plot.left}" y1="${plot.top}" x2="${plot.left}" y2="${plot.bottom}" stroke="${COLOURS.text}"/>`);
  out.push(text((plot.left + plot.right) / 2, plot.bottom + 30, 'milliseconds (log scale)', 'text-anchor="middle" font-size="10"'));

  if (scenario.floorMs !== null) {
    const fx = xOf(scenario.floorMs);
    out.push(`<line x1="${f(fx)}" y1="${plot.top}" x2="${f(fx)}" y2="${plot.bottom}" stroke="${COLOURS.floor}" stroke-dasharray="2 3" stroke-width="1.5"/>`);
    const what = scenario.floorBounds.includes('p50Ms') ? 'floor' : 'floor of the batch';
    out.push(text(fx + 3, plot.top + 10, `${what} ${formatMs(scenario.floorMs)}`, `font-size="10" fill="${COLOURS.floor}"`));
  }

  for (const line of lines) {
    const q = line.figures.distributionMs;
    let d = `M${f(xOf(q[0]!))},${f(yOf(0))}`;
    for (let i = 1; i < q.length; i++) d += `H${f(xOf(q[i]!))}V${f(yOf(i / (q.length - 1)))}`;
    const dash = line.dashed ? ' stroke-dasharray="5 4"' : '';
    out.push(`<path d="${d}" fill="none" stroke="${line.colour}" stroke-width="${line.dashed ? 1.5 : 2}"${dash}/>`);
  }

  // Legend, above the plot.
  lines.forEach((line, i) => {
    const lx = x + 10;
    const ly = y + LEGEND_TOP + i * LEGEND_LINE;
    const dash = line.dashed ? ' stroke-dasharray="5 4"' : '';
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${line.colour}" stroke-width="2"${dash}/>`);
    const p = line.figures;
    out.push(text(lx + 28, ly, `${line.label}: p50 ${formatMs(p.p50Ms)}, p95 ${formatMs(p.p95Ms)}, max ${formatMs(p.maxMs)}`, 'font-size="11"'));
  });
  out.push('</g>');
  return out.join('\n');
}

function tick(v: number): string {
  if (v >= 1000) return `${v / 1000} s`;
  return `${Number(v.toPrecision(3))}`;
}

function formatMs(v: number | null): string {
  if (v === null) return '-';
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 100) return `${v.toFixed(1)} ms`;
  return `${Math.round(v)} ms`;
}

function clip(value: string, length: number): string {
  return value.length > length ? `${value.slice(0, length - 3)}...` : value;
}

function f(n: number): string {
  return n.toFixed(1);
}

function text(x: number, y: number, content: string, attributes = ''): string {
  const fill = attributes.includes('fill=') ? '' : ` fill="${COLOURS.text}"`;
  return `<text x="${f(x)}" y="${f(y)}"${fill} ${attributes}>${escape(content)}</text>`;
}

function escape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
