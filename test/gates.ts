/** The test's side of `fixtures/gates.js`: nodes held until the test opens a gate, and nodes that record the order they ran in. */
import type { NodeDefinition } from '../src/index';
import { fixture } from './helpers';

const GATES = fixture('gates.js');

/** The shared memory of `fixtures/gates.js`: held nodes, their gate, and the order of recorded nodes. */
export class Gates {
  readonly cells = new SharedArrayBuffer((4 + 4096) * 4);
  private readonly i32 = new Int32Array(this.cells);

  node(fn: 'hold' | 'wait', id = fn): NodeDefinition {
    return { id, module: GATES, export: fn, params: { cells: this.cells } };
  }

  record(tag: number): NodeDefinition {
    return { id: 'record', module: GATES, export: 'record', params: { cells: this.cells, tag } };
  }

  /** Resolves once `count` held nodes have started. */
  async started(count: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let seen = Atomics.load(this.i32, 0); seen < count; seen = Atomics.load(this.i32, 0)) {
      if (Date.now() > deadline) throw new Error(`${seen} held nodes started, expected ${count}`);
      await Atomics.waitAsync(this.i32, 0, seen, deadline - Date.now()).value;
    }
  }

  get startedCount(): number {
    return Atomics.load(this.i32, 0);
  }

  /** Waiting nodes whose signal aborted. */
  get abortedCount(): number {
    return Atomics.load(this.i32, 3);
  }

  open(): void {
    Atomics.store(this.i32, 1, 1);
    Atomics.notify(this.i32, 1);
  }

  /** The tags of the recorded nodes, in the order they ran. */
  tags(): number[] {
    const count = Atomics.load(this.i32, 2);
    return Array.from({ length: count }, (_, i) => Atomics.load(this.i32, 4 + i));
  }
}

