/**
 * Natural batching for a hot lookup (issue 15): a lookup runs at once while fewer than `maxInFlight`
 * statements for it are running; one that arrives while they all are waits, with every other that
 * arrives meanwhile, and they go together in the next statement. An idle server answers each lookup
 * alone, as before (no timer, no added latency); a busy one sends one statement for many requests: one
 * round trip, one parse and one snapshot instead of one each, which is most of what a primary-key lookup
 * costs the server and the database.
 *
 * `run` answers the keys in their order. When it fails, every lookup of that batch fails with its error
 * (a database outage is a 503 for each request, as it would be alone).
 */
import type { Sql } from './database.js'

export interface BatchOptions<K> {
  maxInFlight: number
  /** Keys per statement. */
  maxBatch: number
  /** What a key weighs (the bytes it sends, say) and the most one statement carries; a heavier key goes alone. */
  weight?: { of(key: K): number; max: number }
}

export function createBatcher<K, R>(run: (keys: K[]) => Promise<R[]>, options: BatchOptions<K>): (key: K) => Promise<R> {
  interface Waiting {
    key: K
    resolve(value: R): void
    reject(err: unknown): void
  }
  let queue: Waiting[] = []
  let inFlight = 0

  /** How many of the waiting lookups the next statement takes (at least one). */
  function nextBatchSize(): number {
    const count = Math.min(queue.length, options.maxBatch)
    if (!options.weight) return count
    let total = options.weight.of(queue[0]!.key)
    let n = 1
    while (n < count && (total += options.weight.of(queue[n]!.key)) <= options.weight.max) n++
    return n
  }

  function flush(): void {
    const size = nextBatchSize()
    const batch = queue.length === size ? queue : queue.slice(0, size)
    queue = batch === queue ? [] : queue.slice(size)
    inFlight++
    let results: Promise<R[]>
    try {
      results = run(batch.map((w) => w.key))
    } catch (err) {
      results = Promise.reject(err)
    }
    results.then(
      (values) => {
        if (values.length !== batch.length) throw new Error(`a batch of ${batch.length} lookups got ${values.length} answers`)
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(values[i]!)
      },
    ).catch((err: unknown) => {
      for (const w of batch) w.reject(err)
    }).finally(() => {
      inFlight--
      if (queue.length > 0) flush()
    })
  }

  return (key) =>
    new Promise<R>((resolve, reject) => {
      queue.push({ key, resolve, reject })
      if (inFlight < options.maxInFlight) flush()
    })
}

/**
 * `run` batched per database (one batcher for each Sql), one statement at a time: while it runs, the
 * next batch gathers. More at once made smaller batches for the same work: in the command cycle of
 * `npm run bench:mdm` (64 devices), up to half the pool (5 statements) at once cost the server 1.05 ms
 * and Postgres 0.54 ms of CPU per report, 2 at once 1.03 and 0.40 ms, one at a time 0.82 and 0.31 ms;
 * signed Idle went from 0.73x to 0.84-0.95x of the bare route. What a statement here waits for is the
 * database's own work on rows no other transaction holds for long (the context lookup only reads), and
 * statement_timeout bounds it; the rest of the pool stays free for everything else.
 */
export function batchedPerDatabase<K, R>(run: (sql: Sql, keys: K[]) => Promise<R[]>, options: Pick<BatchOptions<K>, 'weight'> = {}): (sql: Sql, key: K) => Promise<R> {
  const batchers = new WeakMap<Sql, (key: K) => Promise<R>>()
  return (sql, key) => {
    let load = batchers.get(sql)
    if (!load) {
      load = createBatcher((keys: K[]) => run(sql, keys), { maxInFlight: 1, maxBatch: 100, ...options })
      batchers.set(sql, load)
    }
    return load(key)
  }
}
