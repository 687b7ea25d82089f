/**
 * The executor's knowledge of the current attempt at each job in flight: BullMQ's
 * `attemptsStarted`, which it bumps each time it hands the job to a process. Outcomes of
 * earlier attempts are ignored: a process that lost a job's lock to another may still
 * have had something on its way.
 *
 * It is the latest attempt an outcome names (signed, with a secret; a process that takes
 * a job over says so first, before anything of it runs) and, without a secret only, the
 * count of the job's `active` events: those are not signed, and anyone able to write to
 * Redis could add some to have an authentic outcome ignored.
 */
export class CurrentAttempts {
  private readonly byJob = new Map<string, number>();

  /** `countActive`: whether `active` events count (without a secret). */
  constructor(private readonly countActive: boolean) {}

  /** BullMQ handed job `jobId` to a process (its `active` event). */
  activated(jobId: string): void {
    if (this.countActive) this.byJob.set(jobId, (this.byJob.get(jobId) ?? 0) + 1);
  }

  /**
   * An outcome of `attempt` at job `jobId` came (checked: signed, with a secret):
   * undefined when it is of the current attempt (or of a later one, current from now
   * on), else the current one, and the outcome is to be ignored.
   */
  outdated(jobId: string, attempt: number): number | undefined {
    const current = this.byJob.get(jobId) ?? 0;
    if (attempt < current) return current;
    this.byJob.set(jobId, attempt);
    return undefined;
  }

  forget(jobId: string): void {
    this.byJob.delete(jobId);
  }
}
