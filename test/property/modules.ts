/** The node modules of the property tests' cases. */
import { join } from 'node:path';
import type { CaseModules } from './runner';

const fixture = (name: string): string => join(__dirname, '..', 'fixtures', name);

export const CASE_MODULES: CaseModules = {
  random: fixture('random-node.js'),
  trivial: fixture('increment.js'),
  hangOnLoad: fixture('hang-on-load.js'),
  throwOnLoad: fixture('throws-on-load.js'),
  exitOnLoad: fixture('exit-on-load.js'),
};
