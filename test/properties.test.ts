/**
 * Property-based tests: random DAGs of 1 to 30 nodes that succeed, throw, exit their
 * thread, spin forever or wait (honouring their signal or not), leave a loop behind,
 * or whose module's load hangs, throws or exits, some with hostile ids, under random node
 * timeouts, pipeline timeouts and caller aborts, up to three runs at once. See
 * test/property/model.ts for what is predicted and test/property/runner.ts for what
 * is checked. `npm run soak` runs the same properties for a chosen time.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { PipelineExecutor } from '../src/index';
import { useExecutors } from './helpers';
import { CASE_MODULES } from './property/modules';
import { GRACE_MS, caseArb } from './property/model';
import { runCase } from './property/runner';

/** Cases per run of the suite; CI keeps it well under two minutes. */
const CASES = Number(process.env.PROPERTY_CASES ?? 40);

describe('properties', function () {
  this.timeout(240_000);
  const newExecutor = useExecutors();

  it(`every run settles once, as the model predicts, with no stray side effect, double run or leak (${CASES} cases)`, async () => {
    const executor: PipelineExecutor = newExecutor({ threads: 2, timeouts: { cleanupGraceMs: GRACE_MS, nodeTimeoutMs: Infinity } });
    await executor.ready();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(caseArb, async (spec) => {
        const report = await runCase(executor, spec, CASE_MODULES);
        runs += report.runs;
        if (report.violations.length > 0) throw new Error(`${report.violations.join('\n')}\nin ${JSON.stringify(spec)}`);
      }),
      { numRuns: CASES, endOnFailure: true, ...(process.env.PROPERTY_SEED ? { seed: Number(process.env.PROPERTY_SEED) } : {}) },
    );
    console.log(`      ${runs} runs in ${CASES} cases; ${executor.stats().terminations} threads terminated, ${executor.stats().crashes} crashed`);
    expect(executor.stats().threads).to.equal(2);
  });
});
