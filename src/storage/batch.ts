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

export function createBatcher<K, R>(run: (keys: K[]) => Promise<R[]>, options: { maxInFlight: number; maxBatch: number }): (key: K) => Promise<R> {
  interface Waiting {
    key: K
    resolve(value: R): void
    reject(err: unknown): void
  }
  let queue: Waiting[] = []
  let inFlight = 0

  function flush(): void {
    const batch = queue.length <= options.maxBatch ? queue : queue.slice(0, options.maxBatch)
    queue = batch === queue ? [] : queue.slice(batch.length)
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
 * `run` batched per database (one batcher for each Sql), with at most half the pool's connections
 * running it: the rest is left to the other statements of the same requests.
 */
export function batchedPerDatabase<K, R>(run: (sql: Sql, keys: K[]) => Promise<R[]>): (sql: Sql, key: K) => Promise<R> {
  const batchers = new WeakMap<Sql, (key: K) => Promise<R>>()
  return (sql, key) => {
    let load = batchers.get(sql)
    if (!load) {
      load = createBatcher((keys: K[]) => run(sql, keys), { maxInFlight: Math.max(1, Math.floor(sql.connections / 2)), maxBatch: 100 })
      batchers.set(sql, load)
    }
    return load(key)
  }
}
