import { expect } from 'chai';
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
});
