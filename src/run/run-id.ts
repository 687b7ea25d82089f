/**
 * Run ids: random (version 4) UUIDs, as `crypto.randomUUID()` makes them, but held as
 * one flat string. `randomUUID()` returns a string joined from 18 pieces, which V8 keeps
 * as a tree of 17 concatenated strings: about 430 bytes for each run in flight, where
 * the flat string takes 56.
 */
import { randomFillSync } from 'node:crypto';

/** Random bytes, 16 per id, refilled when used up (as `randomUUID()` caches them). */
const entropy = Buffer.alloc(16 * 256);
let used = entropy.length;
/** The id being written, as Latin-1 bytes. */
const text = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

export function newRunId(): string {
  if (used === entropy.length) {
    randomFillSync(entropy);
    used = 0;
  }
  let at = 0;
  for (let i = 0; i < 16; i++) {
    let byte = entropy[used + i]!;
    if (i === 6) byte = (byte & 0x0f) | 0x40; // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80; // variant 10
    if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = 0x2d; // '-'
    text[at++] = HEX[byte >> 4]!;
    text[at++] = HEX[byte & 0x0f]!;
  }
  used += 16;
  return text.toString('latin1');
}
