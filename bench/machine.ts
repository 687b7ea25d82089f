/**
 * How busy the rest of the machine was while something ran: CPU time the other
 * processes used (all CPU time the kernel counted, minus this process's own, worker
 * threads included, and that of the processes it started to measure, see
 * {@link countAsOwn}) and time the hypervisor stole. Linux only (/proc/stat); `null`
 * elsewhere. On a shared machine this tells a quiet measurement from a noisy one.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';

/** Shares of the machine's CPU capacity (cores x wall time), 0..1. */
export interface Noise {
  /** Used by other processes. */
  readonly otherProcesses: number | null;
  /** Stolen by the hypervisor. */
  readonly steal: number | null;
}

/** Kernel clock ticks per second (USER_HZ), 100 on Linux. */
const TICKS_PER_SECOND = 100;

interface Snapshot {
  readonly wallMs: number;
  readonly ownUs: number;
  /** CPU ticks used so far by the processes counted as this one's. */
  readonly helperTicks: number;
  readonly busyTicks: number | null;
  readonly stealTicks: number | null;
}

/** Processes the benchmark started and measures with itself (a Redis server, worker processes). */
const helpers = new Set<number>();
/** Ticks of the helpers no longer watched, as of when they were let go. */
let retiredTicks = 0;

/**
 * Counts process `pid`'s CPU time as this process's own; returns the undo, to call
 * before the process ends (its time so far stays counted).
 */
export function countAsOwn(pid: number): () => void {
  helpers.add(pid);
  return () => {
    if (!helpers.delete(pid)) return;
    retiredTicks += processTicks(pid) ?? 0;
  };
}

/** utime + stime of a process, in ticks; undefined once it is gone. */
function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "pid (comm) ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function kernelTicks(): { busy: number; steal: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [label, ...fields] = line.trim().split(/\s+/);
    if (label !== 'cpu') return null;
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields.map(Number);
    return { busy: user + nice + system + irq + softirq, steal };
  } catch {
    return null;
  }
}

function snapshot(): Snapshot {
  const ticks = kernelTicks();
  const own = process.cpuUsage();
  let helperTicks = retiredTicks;
  for (const pid of helpers) helperTicks += processTicks(pid) ?? 0;
  return { wallMs: performance.now(), ownUs: own.user + own.system, helperTicks, busyTicks: ticks?.busy ?? null, stealTicks: ticks?.steal ?? null };
}

/** Adds up the noise over many stretches of time (e.g. one contender's iterations). */
export class NoiseMeter {
  private capacityS = 0;
  private otherS = 0;
  private stealS = 0;
  private known = true;
  private startedAt: Snapshot | undefined;

  start(): void {
    this.startedAt = snapshot();
  }

  stop(): void {
    const start = this.startedAt;
    if (start === undefined) return;
    this.startedAt = undefined;
    const end = snapshot();
    if (start.busyTicks === null || end.busyTicks === null) {
      this.known = false;
      return;
    }
    this.capacityS += ((end.wallMs - start.wallMs) / 1000) * availableParallelism();
    const busyS = (end.busyTicks - start.busyTicks) / TICKS_PER_SECOND;
    const ownS = (end.ownUs - start.ownUs) / 1e6 + (end.helperTicks - start.helperTicks) / TICKS_PER_SECOND;
    this.otherS += Math.max(0, busyS - ownS);
    this.stealS += ((end.stealTicks ?? 0) - (start.stealTicks ?? 0)) / TICKS_PER_SECOND;
  }

  get noise(): Noise {
    if (!this.known || this.capacityS <= 0) return { otherProcesses: null, steal: null };
    return { otherProcesses: this.otherS / this.capacityS, steal: this.stealS / this.capacityS };
  }
}

/** Starts watching; call the result to get the noise since. */
export function watchNoise(): () => Noise {
  const meter = new NoiseMeter();
  meter.start();
  return () => {
    meter.stop();
    return meter.noise;
  };
}
