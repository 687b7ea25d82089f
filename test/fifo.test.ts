import { expect } from 'chai';
import fc from 'fast-check';
import { Fifo } from '../src/pool/fifo';

describe('Fifo (the lists of waiting node tasks and of keys taking turns)', () => {
  it('gives items back oldest first, skipping the removed ones, and counts what is left', () => {
    const fifo = new Fifo<number>();
    for (let i = 0; i < 5; i++) fifo.push(i);
    fifo.remove(1);
    fifo.remove(3);
    expect(fifo.size).to.equal(3);
    expect([fifo.shift(), fifo.shift()]).to.deep.equal([0, 2]);
    fifo.push(5);
    expect(fifo.drain()).to.deep.equal([4, 5]);
    expect(fifo.size).to.equal(0);
    expect(fifo.shift()).to.equal(undefined);
  });

  it('keeps its order across the compaction of a long drained front', () => {
    const fifo = new Fifo<number>();
    const taken: number[] = [];
    for (let i = 0; i < 5_000; i++) {
      fifo.push(i);
      if (i % 3 === 2) taken.push(fifo.shift()!, fifo.shift()!);
    }
    fifo.remove(4_999);
    taken.push(...fifo.drain());
    expect(taken).to.deep.equal(Array.from({ length: 4_999 }, (_, i) => i));
  });

  it('peeks without taking, tells whether a removal found the item, and serves an item queued again after its removal once', () => {
    const fifo = new Fifo<string>();
    fifo.push('a');
    fifo.push('b');
    expect(fifo.remove('a')).to.equal(true);
    expect(fifo.remove('a')).to.equal(false);
    expect(fifo.peek()).to.equal('b');
    fifo.push('a');
    expect([...fifo]).to.deep.equal(['b', 'a']);
    expect(fifo.size).to.equal(2);
    expect(fifo.drain()).to.deep.equal(['b', 'a']);
    expect(fifo.peek()).to.equal(undefined);
  });
  it('behaves as a plain list under any mix of pushes, shifts, peeks, removals and pushes again', () => {
    // The set of members is made by the first removal and dropped when the queue empties:
    // the model checks every path through that, against an array.
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), item: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ kind: fc.constant('shift' as const) }),
      fc.record({ kind: fc.constant('peek' as const) }),
      fc.record({ kind: fc.constant('remove' as const), item: fc.integer({ min: 0, max: 30 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const fifo = new Fifo<number>();
        const model: number[] = [];
        for (const step of ops) {
          if (step.kind === 'push') {
            // Distinct items only, as the queue asks.
            if (model.includes(step.item)) continue;
            fifo.push(step.item);
            model.push(step.item);
          } else if (step.kind === 'shift') {
            expect(fifo.shift()).to.equal(model.shift());
          } else if (step.kind === 'peek') {
            expect(fifo.peek()).to.equal(model[0]);
          } else {
            const at = model.indexOf(step.item);
            expect(fifo.remove(step.item)).to.equal(at >= 0);
            if (at >= 0) model.splice(at, 1);
          }
          expect(fifo.size).to.equal(model.length);
          expect([...fifo]).to.deep.equal(model);
        }
      }),
      { numRuns: 500 },
    );
  });
});
