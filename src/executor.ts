import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { expectDuration, resolveOptions, resolveTimeouts, type ExecutorOptions, type ResolvedOptions, type ResolvedTimeouts, type TimeoutOptions } from './options';
import type { Dispatcher, DispatcherEvents } from './pool/dispatcher';
import { PiscinaDispatcher } from './pool/piscina-dispatcher';
import { describe } from './shared/thrown';
import { timerDelay } from './shared/delay';
import { ExecutorClosedException, PipelineDefinitionError, QueueFullException } from './errors';
import { judgeHealth, type HealthOptions, type HealthReport } from './observe/health';
import { Observer, type ExecutorEvents } from './observe/observer';
import type { PipelineRequest } from './plan/definition';
import type { PipelineResult, PlainPipelineRequest, TypedNodeList, TypedPipelineRequest } from './plan/typed';
import { planPipeline } from './plan/plan';
import { PipelineRun, type CleanupHandler, type RunHooks } from './run/scheduler';
import { newRunId } from './run/run-id';
import { PipelineDeadlines } from './run/deadlines';
import { Admission, type KeyStats } from './run/admission';
import { SharedRuns, type Attachment } from './run/shared-runs';
import type { CountsByStatus, DurationSummary } from './observe/stats';

/** How often the main thread's event-loop delay is sampled, for health(). */
const EVENT_LOOP_RESOLUTION_MS = 20;

/** This package's version, for the meter and tracer names (from src/ or dist/src/). */
const VERSION = ((): string => {
  for (const up of ['..', '../..']) {
    try {
      const manifest = require(join(__dirname, up, 'package.json')) as { name?: string; version?: string };
      if (manifest.name === 'lukhas-orchestrator' && manifest.version !== undefined) return manifest.version;
    } catch {
      // not there
    }
  }
  return '0.0.0';
})();

/** A run in flight, from {@link PipelineExecutor.startPipeline}. */
export interface PipelineHandle<Result = unknown> {
  /** Unique per run. */
  readonly runId: string;
  readonly pipelineId: string;
  /** Settles as `executePipeline` would. */
  readonly result: Promise<Result>;
  /**
   * Cancels the run: it rejects with a `CancellationException` carrying `reason`
   * (by default an `AbortError` DOMException, as `AbortController.abort()` gives).
   * Does nothing once the run has settled.
   */
  cancel(reason?: unknown): void;
  /**
   * Adds a handler to run if the run is cancelled or times out: handlers run once,
   * in the order they were added, after the run's nodes have stopped and before its
   * promise rejects. Each may take up to `cleanupGraceMs`; one that throws, rejects or
   * takes longer is reported through the executor's `'cleanupError'` event (a process
   * warning when nobody listens), never thrown.
   */
  onCleanup(handler: CleanupHandler): void;
}

export interface CloseOptions {
  /** How long runs in flight may finish before they are cancelled; the executor's `closeTimeoutMs` by default. */
  readonly timeoutMs?: number;
}

/**
 * Runs pipelines on a pool of worker threads.
 *
 * Events (typed: see {@link ExecutorEvents}): `'runStart'`, `'runEnd'`, `'nodeStart'`,
 * `'nodeEnd'`, `'progress'`, `'threadExit'`, `'cleanupError'`.
 *
 * @example
 * ```ts
 * const executor = new PipelineExecutor({ timeouts: { nodeTimeoutMs: 500 } });
 * const result = await executor.executePipeline({
 *   pipelineId: 'resize',
 *   nodes: [{ id: 'decode', module: '/abs/path/decode.js' }],
 *   initialInput: buffer,
 * });
 * await executor.close();
 * ```
 */
export class PipelineExecutor extends EventEmitter<ExecutorEvents> {
  private readonly options: ResolvedOptions;
  private readonly dispatcher: Dispatcher;
  private readonly runs = new Map<string, PipelineRun>();
  /** Runs in flight and waiting for admission (see `run/admission.ts`). */
  private readonly admission: Admission<PipelineRun>;
  /** Runs that calls with the same `dedupeKey` share. */
  private readonly shared = new SharedRuns<PipelineRun>();
  private closing: Promise<void> | undefined;
  private readonly observer: Observer;
  private readonly eventLoop = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  private readonly createdAt = performance.now();

  /**
   * Starts the worker threads.
   * @throws {TypeError} for an unknown option or a value of the wrong type.
   * @throws {RangeError} for a value out of range.
   */
  constructor(options?: ExecutorOptions) {
    super();
    this.options = resolveOptions(options);
    this.admission = new Admission(this.options);
    this.observer = new Observer(this, VERSION, {
      runsInFlight: () => this.admission.inFlight,
      runsQueued: () => this.admission.waiting,
      threads: () => this.dispatcher.stats().threads,
    });
    const events: DispatcherEvents = {
      nodeCrashed: (runId, nodeId, exitCode, cause, element) => this.runs.get(runId)?.crashed(nodeId, exitCode, cause, element),
      threadExited: (exit) => {
        this.observer.threadEnded(exit.reason, performance.now());
        this.emit('threadExit', exit);
      },
      threadReplaced: () => this.observer.threadReplaced(),
    };
    this.dispatcher = this.options.backend?.createDispatcher(this.options, events) ?? new PiscinaDispatcher(this.options, events);
    this.eventLoop.enable();
  }

  /**
   * Runs a pipeline and resolves with its result: the last node's output for a chain,
   * the sink's output for a DAG (or `{ [sinkId]: output }` for several sinks).
   *
   * @throws {PipelineDefinitionError} (rejects) for a bad definition, before any node runs.
   * @throws {NodeTimeoutException} (rejects) when a node runs past its timeout.
   * @throws {PipelineTimeoutException} (rejects) when the run takes longer than its pipeline timeout.
   * @throws {CancellationException} (rejects) when `signal` aborts.
   * @throws {WorkerCrashedException} (rejects) when a node takes its thread down.
   * @throws {ExecutorClosedException} (rejects) once `close()` was called.
   * Any error a node throws rejects the run as the node threw it, with `nodeId`,
   * `pipelineId` and `runId` added.
   *
   * Typed: with nodes from `defineNode` or `nodeModule` written as a literal list, each
   * node's input is checked against what it gets (the previous node's output,
   * `initialInput`, or `{ [depId]: output }`) and the result's type is inferred. With plain
   * definitions, the result is `unknown`, or `Result` when given.
   */
  executePipeline<const Nodes extends TypedNodeList>(request: TypedPipelineRequest<Nodes>): Promise<PipelineResult<Nodes>>;
  executePipeline<Result = unknown, Input = unknown>(request: PlainPipelineRequest<Input>): Promise<Result>;
  executePipeline(request: PipelineRequest): Promise<unknown> {
    try {
      return this.launch(request).promise;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Starts a run and returns its handle at once.
   *
   * @throws {PipelineDefinitionError} for a bad definition, before any node runs.
   * @throws {QueueFullException} when `maxConcurrentPipelines` runs are in flight and
   * `maxQueuedPipelines` wait.
   * @throws {ExecutorClosedException} once `close()` was called.
   * Typed as `executePipeline` is.
   */
  startPipeline<const Nodes extends TypedNodeList>(request: TypedPipelineRequest<Nodes>): PipelineHandle<PipelineResult<Nodes>>;
  startPipeline<Result = unknown, Input = unknown>(request: PlainPipelineRequest<Input>): PipelineHandle<Result>;
  startPipeline(request: PipelineRequest): PipelineHandle {
    const { run, promise, cancel } = this.launch(request);
    return {
      runId: run.runId,
      pipelineId: run.pipelineId,
      result: promise,
      cancel: (reason = new DOMException('This operation was aborted', 'AbortError')) => cancel(reason),
      onCleanup: (handler) => run.onCleanup(handler),
    };
  }

  /**
   * Checks and plans a request, then starts its run, or queues it for admission, or
   * joins the run in flight with its `dedupeKey`.
   */
  private launch(request: PipelineRequest): Attachment<PipelineRun> {
    if (this.closing !== undefined) throw new ExecutorClosedException();
    const { plan, params } = planPipeline(request, this.dispatcher.modulesAreLocal, this.options.moduleRoots);
    const timeouts = requestTimeouts(this.options.timeouts, request.timeouts, plan.pipelineId);
    const { dedupeKey } = request;
    const joined = dedupeKey === undefined ? undefined : this.shared.join(dedupeKey, request.signal);
    if (joined !== undefined) return joined;
    const { maxConcurrentPipelines, maxQueuedPipelines } = this.options;
    const run = new PipelineRun({
      runId: newRunId(),
      plan,
      params,
      input: request.initialInput,
      timeouts,
      // A shared run's callers leave it one by one (see run/shared-runs.ts).
      signal: dedupeKey === undefined ? request.signal : undefined,
      failFast: request.failFast ?? true,
      onProgress: request.onProgress,
      priority: request.priority ?? 0,
      concurrencyKey: request.concurrencyKey,
      dispatcher: this.dispatcher,
      hooks: this.hooks,
      deadlines: this.deadlines,
    });
    if (!this.admission.hasRoomFor(run) && this.admission.waiting >= maxQueuedPipelines) {
      throw new QueueFullException({ pipelineId: plan.pipelineId, maxConcurrentPipelines, maxQueuedPipelines });
    }
    this.runs.set(run.runId, run);
    const admitNow = this.admission.add(run);
    this.observer.runStarted(run, plan.nodes.length);
    run.start();
    if (admitNow) run.admit();
    if (dedupeKey !== undefined) return this.shared.start(dedupeKey, run, request.signal);
    return { run, promise: run.promise, cancel: (reason) => run.cancel(reason) };
  }

  /** Pipeline timeouts of its runs: one timer per timeout value (see `run/deadlines.ts`). */
  private readonly deadlines = new PipelineDeadlines();

  private readonly hooks: RunHooks = {
    admitted: (run, waitedMs) => this.observer.admitted(run, waitedMs),
    wantsStarts: () => this.observer.wantsStarts(),
    nodeStarted: (run, nodeId, attempt, startedAt) => this.observer.nodeStarted(run, nodeId, attempt, startedAt),
    nodeEnded: (run, nodeId, status, startedAt, endedAt, error) => this.observer.nodeEnded(run, nodeId, status, startedAt, endedAt, error),
    ended: (run, status, error, durationMs) => {
      this.observer.runEnded(run, status, error, durationMs);
      this.runs.delete(run.runId);
      for (const next of this.admission.remove(run)) next.admit();
    },
    cleanupFailed: (error, run) => this.reportCleanupError(error, run),
    progress: (event) => {
      if (this.listenerCount('progress') > 0) this.emit('progress', event);
    },
  };

  /**
   * Cancels every run in flight whose `runId` or `pipelineId` is `id`, as
   * {@link PipelineHandle.cancel} would.
   * @returns how many runs it cancelled.
   */
  cancel(id: string, reason: unknown = new DOMException('This operation was aborted', 'AbortError')): number {
    let count = 0;
    for (const run of this.runs.values()) {
      if (run.active && (run.runId === id || run.pipelineId === id)) {
        run.cancel(reason);
        count++;
      }
    }
    return count;
  }

  /**
   * Resolves once every worker thread has started and can take nodes at once: await
   * it before serving traffic to keep thread start-up out of the first runs' latency.
   */
  ready(): Promise<void> {
    return this.dispatcher.ready();
  }

  /**
   * A snapshot for monitoring, without any exporter: runs and node attempts by outcome,
   * percentiles of their durations, what is in flight and waiting, the threads and how
   * busy they are.
   */
  stats(): ExecutorStats {
    const dispatcher = this.dispatcher.stats();
    const elapsed = performance.now() - this.createdAt;
    return {
      ...dispatcher,
      runsInFlight: this.admission.inFlight,
      runsQueued: this.admission.waiting,
      keys: this.admission.busiestKeys(),
      sharedRuns: this.shared.inFlight,
      runsJoined: this.shared.joined,
      runs: this.observer.runs.byStatus(),
      nodes: this.observer.nodes.byStatus(),
      runDurationMs: this.observer.runs.summary(),
      nodeDurationMs: this.observer.nodes.summary(),
      utilisation: elapsed > 0 ? Math.min(1, this.dispatcher.busyMs() / (elapsed * this.options.threads)) : 0,
    };
  }

  /**
   * Checks the executor and its threads, within `timeoutMs` (default 250 ms) whatever
   * their state: `'error'` when it cannot serve (closed, no thread alive or answering,
   * the main thread's event loop lagging over a second, threads replaced over and
   * over), `'degraded'` when it serves with trouble (a thread held by a long node, a
   * lagging event loop, threads being replaced, a queue nearly full), `'ok'` otherwise.
   */
  async health(options: HealthOptions = {}): Promise<HealthReport> {
    const timeoutMs = options.timeoutMs ?? 250;
    expectDuration(timeoutMs, 'timeoutMs');
    const threads = this.closing === undefined ? await this.dispatcher.ping(timerDelay(timeoutMs)) : [];
    const stats = this.dispatcher.stats();
    return judgeHealth({
      closed: this.closing !== undefined,
      threads,
      liveThreads: stats.threads,
      eventLoop: this.eventLoop,
      eventLoopResolutionMs: EVENT_LOOP_RESOLUTION_MS,
      threadsEndedLastMinute: this.observer.recentThreadEnds(performance.now()),
      runsQueued: this.admission.waiting,
      maxQueuedPipelines: this.options.maxQueuedPipelines,
      tasksWaiting: stats.tasksWaiting,
    });
  }

  /**
   * Refuses new runs, lets runs in flight finish for up to `timeoutMs` (the
   * executor's `closeTimeoutMs` by default), cancels the rest, then terminates the
   * threads. Idempotent: later calls return the first call's promise.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.closing === undefined) {
      const timeoutMs = options.timeoutMs ?? this.options.closeTimeoutMs;
      expectDuration(timeoutMs, 'timeoutMs');
      this.closing = this.shutdown(timeoutMs);
    }
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    const pending = [...this.runs.values()].map((run) => run.promise.catch(() => undefined));
    if (pending.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        if (timeoutMs !== Infinity) timer = setTimeout(resolve, timerDelay(timeoutMs));
      });
      await Promise.race([Promise.all(pending), deadline]);
      clearTimeout(timer);
      const reason = new ExecutorClosedException('The executor closed before the run finished');
      for (const run of this.runs.values()) run.cancel(reason);
      await Promise.all(pending);
    }
    await this.dispatcher.destroy();
    this.eventLoop.disable();
    this.observer.metrics.close();
  }

  private reportCleanupError(error: unknown, run: PipelineRun): void {
    if (this.listenerCount('cleanupError') > 0) {
      this.emit('cleanupError', error, { runId: run.runId, pipelineId: run.pipelineId });
      return;
    }
    process.emitWarning(`A cleanup handler of run ${run.runId} (pipeline "${run.pipelineId}") failed: ${describe(error)}`, {
      type: 'CleanupWarning',
      code: 'LUKHAS_CLEANUP_FAILED',
    });
  }
}

/** `executor.stats()`. */
export interface ExecutorStats {
  /** Runs by how they ended. */
  readonly runs: CountsByStatus;
  /** Node attempts by how they ended (a retried node counts each attempt). */
  readonly nodes: CountsByStatus;
  /** From the call to the end, of runs that ended. */
  readonly runDurationMs: DurationSummary;
  /** From the start in the worker to the end, of node attempts that started. */
  readonly nodeDurationMs: DurationSummary;
  /** Share of the threads' time that node code held them since the executor started (0 to 1). */
  readonly utilisation: number;
  /** Live worker threads (replacements included while they start). */
  readonly threads: number;
  /** Node tasks on threads or on their way to one. */
  readonly tasksInFlight: number;
  /**
   * Node tasks held back on the main thread until a thread has room for them, served by
   * `priority`, then round-robin across `concurrencyKey`s.
   */
  readonly tasksQueued: number;
  /** Of those, the ones that wait because every slot is taken (`threads * tasksPerThread` are in flight). */
  readonly tasksWaiting: number;
  /** Threads terminated because a node did not stop in time. */
  readonly terminations: number;
  /** Threads that died by themselves (`process.exit()`, an uncaught error, out of memory). */
  readonly crashes: number;
  /** Node tasks sent again after their thread was terminated under them. */
  readonly resends: number;
  /** Runs admitted and not yet settled. */
  readonly runsInFlight: number;
  /** Runs waiting for admission (`maxConcurrentPipelines`, `maxConcurrentPerKey`). */
  readonly runsQueued: number;
  /**
   * Runs in flight and waiting per `concurrencyKey`: the busiest keys only (at most 10,
   * most runs first); runs without a key are not listed.
   */
  readonly keys: readonly KeyStats[];
  /** Runs in flight with a `dedupeKey`, which calls with the same key join. */
  readonly sharedRuns: number;
  /** Calls that joined a run in flight (same `dedupeKey`) instead of starting one, in all. */
  readonly runsJoined: number;
}

/** A run's own `timeouts` over the executor's: a mistake in them is one in the request. */
function requestTimeouts(base: ResolvedTimeouts, overrides: TimeoutOptions | undefined, pipelineId: string): ResolvedTimeouts {
  try {
    return resolveTimeouts(base, overrides, 'timeouts');
  } catch (error) {
    throw new PipelineDefinitionError((error as Error).message, { pipelineId, cause: error });
  }
}
