/**
 * Natural batching (storage/batch.ts): a lookup runs at once while fewer than maxInFlight statements run,
 * later ones wait and go together, each caller gets its own answer, and a failed statement fails exactly
 * the lookups it carried.
 */
import { describe, expect, it } from 'vitest'
import { createBatcher } from '../../src/storage/batch.js'

/** A `run` whose statements finish when the test says so. */
function controlled() {
  const calls: { keys: number[]; finish(values?: string[]): void; fail(err: Error): void }[] = []
  const run = (keys: number[]) =>
    new Promise<string[]>((resolve, reject) => {
      calls.push({ keys, finish: (values) => resolve(values ?? keys.map((k) => `answer ${k}`)), fail: reject })
    })
  return { calls, run }
}

const tick = () => new Promise((r) => setImmediate(r))

describe('createBatcher', () => {
  it('runs lookups at once up to maxInFlight, then groups the waiting ones into the next statement', async () => {
    const { calls, run } = controlled()
    const load = createBatcher(run, { maxInFlight: 2, maxBatch: 100 })
    const answers = [1, 2, 3, 4, 5].map((k) => load(k))
    await tick()
    expect(calls.map((c) => c.keys)).toEqual([[1], [2]])
    calls[0]!.finish()
    await tick()
    expect(calls.map((c) => c.keys)).toEqual([[1], [2], [3, 4, 5]])
    calls[1]!.finish()
    calls[2]!.finish()
    expect(await Promise.all(answers)).toEqual(['answer 1', 'answer 2', 'answer 3', 'answer 4', 'answer 5'])
    // Idle again: the next lookup runs alone and at once.
    const later = load(6)
    await tick()
    expect(calls.at(-1)!.keys).toEqual([6])
    calls.at(-1)!.finish()
    expect(await later).toBe('answer 6')
  })

  it('sends at most maxBatch keys per statement', async () => {
    const { calls, run } = controlled()
    const load = createBatcher(run, { maxInFlight: 1, maxBatch: 2 })
    const answers = [1, 2, 3, 4, 5, 6].map((k) => load(k))
    for (let i = 0; i < 4; i++) {
      await tick()
      calls.at(-1)!.finish()
    }
    expect(await Promise.all(answers)).toHaveLength(6)
    expect(calls.map((c) => c.keys)).toEqual([[1], [2, 3], [4, 5], [6]])
  })

  it('puts no more weight than weight.max in one statement; a key heavier than that goes alone', async () => {
    const { calls, run } = controlled()
    const load = createBatcher(run, { maxInFlight: 1, maxBatch: 100, weight: { of: (k: number) => k, max: 10 } })
    const answers = [1, 4, 5, 2, 30, 3, 3, 3].map((k) => load(k))
    for (let i = 0; i < 5; i++) {
      await tick()
      calls.at(-1)!.finish()
    }
    expect(await Promise.all(answers)).toHaveLength(8)
    expect(calls.map((c) => c.keys)).toEqual([[1], [4, 5], [2], [30], [3, 3, 3]])
  })

  it('fails the lookups of a failed statement with its error, and only those; the queue goes on', async () => {
    const { calls, run } = controlled()
    const load = createBatcher(run, { maxInFlight: 1, maxBatch: 100 })
    const first = load(1)
    const waiting = [load(2), load(3)]
    await tick()
    calls[0]!.fail(new Error('connection lost'))
    await expect(first).rejects.toThrow('connection lost')
    await tick()
    expect(calls[1]!.keys).toEqual([2, 3])
    calls[1]!.finish()
    expect(await Promise.all(waiting)).toEqual(['answer 2', 'answer 3'])
  })

  it('refuses to guess when a statement answers the wrong number of keys, and survives a run that throws', async () => {
    const { calls, run } = controlled()
    const load = createBatcher(run, { maxInFlight: 1, maxBatch: 100 })
    const answer = load(1)
    await tick()
    calls[0]!.finish(['one', 'two'])
    await expect(answer).rejects.toThrow('a batch of 1 lookups got 2 answers')

    const throwing = createBatcher<number, string>(() => {
      throw new Error('bad statement')
    }, { maxInFlight: 1, maxBatch: 100 })
    await expect(throwing(1)).rejects.toThrow('bad statement')
    await expect(throwing(2)).rejects.toThrow('bad statement')
  })
})
