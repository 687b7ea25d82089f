/**
 * How busy the rest of the machine was while something ran: CPU time the other
 * processes used (all CPU time the kernel counted, minus this process's own, worker
 * threads included) and time the hypervisor stole. Linux only (/proc/stat); `null`
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
  readonly busyTicks: number | null;
  readonly stealTicks: number | null;
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
  return { wallMs: performance.now(), ownUs: own.user + own.system, busyTicks: ticks?.busy ?? null, stealTicks: ticks?.steal ?? null };
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
    const ownS = (end.ownUs - start.ownUs) / 1e6;
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
