/**
 * What the fuzzers (test/reliability/fuzz-*.test.ts) share: mutations of valid inputs (random bytes die
 * at the first tag, SECURITY.md and issue 16), a tally of outcomes per parser, and the run budget.
 *
 * Each input ends as one of: accepted (the parser returned), refused (it threw the error its callers
 * turn into a clear 4xx / CertRep FAILURE), crashed (anything else: a TypeError, a RangeError, a stack
 * overflow), a 5xx (endpoint fuzzers), or a hang (took longer than HANG_MS for a pure parser, or
 * ENDPOINT_HANG_MS for a request through the app and its database: bounds generous enough for a busy
 * shared machine, where a database round trip now and then takes a second or two, and far below what a
 * quadratic or exponential parse of these sizes takes).
 */
import fc from 'fast-check'
import { recordFigures } from '../helpers/figures.js'

/** RELIABILITY_LONG=1 (npm run test:reliability) tries many more inputs per property. */
export const LONG = process.env.RELIABILITY_LONG === '1'
export const runs = (short: number, long = short * 20) => (LONG ? long : short)
/** A per-file timeout for vitest that grows with the long run. */
export const FILE_TIMEOUT = LONG ? 1_800_000 : 120_000
export const HANG_MS = 2_000
export const ENDPOINT_HANG_MS = 5_000

export type Outcome = 'accepted' | 'refused' | 'crashes' | 'fiveHundreds' | 'hangs'

export class Tally {
  inputs = 0
  accepted = 0
  refused = 0
  crashes = 0
  fiveHundreds = 0
  hangs = 0
  slowestMs = 0
  /** The first few crashes, for the assertion message. */
  readonly examples: string[] = []

  add(outcome: Outcome, ms: number, example?: () => string, hangMs = HANG_MS): void {
    this.inputs++
    this[outcome]++
    if (ms > this.slowestMs) this.slowestMs = ms
    if (ms > hangMs) {
      this.hangs++
      if (this.examples.length < 5 && example) this.examples.push(`hang ${Math.round(ms)} ms: ${example()}`)
    }
    if ((outcome === 'crashes' || outcome === 'fiveHundreds') && this.examples.length < 5 && example) this.examples.push(`${outcome}: ${example()}`)
  }

  record(suite: string, extra: Record<string, number> = {}): void {
    const { inputs, accepted, refused, crashes, fiveHundreds, hangs, slowestMs } = this
    // Column names as scripts/reliability-report.mjs prints them ('5xx', shared with the fault drills).
    recordFigures(suite, { inputs, accepted, refused, crashes, '5xx': fiveHundreds, hangs, 'slowest ms': Math.round(slowestMs), ...extra })
  }

  /** The property every fuzzer asserts at the end. */
  get failures(): string {
    return this.crashes || this.fiveHundreds || this.hangs ? this.examples.join('\n') : ''
  }
}

/**
 * Runs a pure parser on one input and files the outcome: `refusal(err)` says whether an error is the
 * parser's own clear refusal; any other error is a crash.
 */
export function classify<T>(tally: Tally, run: () => T, refusal: (err: unknown) => boolean, describe: () => string): { ok: true; value: T } | { ok: false; error: unknown } {
  const start = performance.now()
  try {
    const value = run()
    tally.add('accepted', performance.now() - start)
    return { ok: true, value }
  } catch (error) {
    const ms = performance.now() - start
    const refused = refusal(error)
    tally.add(refused ? 'refused' : 'crashes', ms, () => `${describe()} -> ${(error as Error)?.stack ?? String(error)}`)
    return { ok: false, error }
  }
}

export const hex = (bytes: Uint8Array, max = 96) => Buffer.from(bytes).toString('hex').slice(0, max * 2) + (bytes.length > max ? `... (${bytes.length} bytes)` : '')

export interface Mutation {
  kind: string
  apply(input: Uint8Array): Buffer
}

/**
 * Positions of length octets in DER or BER `input`: one linear walk that steps into every constructed
 * element (definite or indefinite length) and into OCTET STRINGs that hold a SEQUENCE, and over every
 * other primitive, so that length mutations hit real lengths rather than random bytes.
 */
export function derLengthOffsets(input: Uint8Array, limit = 4_000): number[] {
  const out: number[] = []
  let i = 0
  while (i < input.length && out.length < limit) {
    const tag = input[i]!
    let j = i + 1
    if ((tag & 0x1f) === 0x1f) {
      while (j < input.length && input[j]! & 0x80) j++
      j++
    }
    if (j >= input.length) break
    const lengthAt = j
    const first = input[j]!
    let length = -1
    if (first < 0x80) {
      length = first
      j++
    } else if (first === 0x80) {
      j++
    } else {
      const n = first & 0x7f
      if (n > 4 || j + 1 + n > input.length) break
      length = 0
      for (let k = 0; k < n; k++) length = length * 256 + input[j + 1 + k]!
      j += 1 + n
    }
    if (length > input.length - j) break
    out.push(lengthAt)
    const descend = (tag & 0x20) !== 0 || length < 0 || (tag === 0x04 && input[j] === 0x30)
    i = descend ? j : j + length
  }
  return out
}

const byte = fc.integer({ min: 0, max: 255 })

/** One mutation of a valid input. Offsets are fractions so one arbitrary fits every input length. */
export function mutationArb(options: { derOffsets?: number[]; tokens?: string[] } = {}): fc.Arbitrary<Mutation> {
  const at = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true })
  const pos = (f: number, len: number) => Math.min(len - 1, Math.max(0, Math.floor(f * len)))
  const arbs: fc.Arbitrary<Mutation>[] = [
    fc.tuple(at, fc.integer({ min: 1, max: 255 })).map(([f, x]) => ({
      kind: 'flip',
      apply: (b: Uint8Array) => {
        const out = Buffer.from(b)
        out[pos(f, out.length)]! ^= x
        return out
      },
    })),
    fc.tuple(at, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([f, ins]) => ({
      kind: 'insert',
      apply: (b: Uint8Array) => {
        const p = pos(f, b.length + 1)
        return Buffer.concat([b.subarray(0, p), ins, b.subarray(p)])
      },
    })),
    fc.tuple(at, fc.integer({ min: 1, max: 64 })).map(([f, n]) => ({
      kind: 'delete',
      apply: (b: Uint8Array) => {
        const p = pos(f, b.length)
        return Buffer.concat([b.subarray(0, p), b.subarray(p + n)])
      },
    })),
    at.map((f) => ({ kind: 'truncate', apply: (b: Uint8Array) => Buffer.from(b.subarray(0, pos(f, b.length))) })),
    fc.tuple(at, at).map(([f, g]) => ({
      kind: 'duplicate',
      apply: (b: Uint8Array) => {
        const [s, e0] = [pos(f, b.length), pos(g, b.length)].sort((x, y) => x - y) as [number, number]
        // Never an empty range: a duplicate that changes nothing is not a mutation.
        const e = Math.max(e0, Math.min(s + 1, b.length))
        return Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)])
      },
    })),
    fc.tuple(at, fc.array(fc.tuple(at, byte), { minLength: 2, maxLength: 8 })).map(([, flips]) => ({
      kind: 'scatter',
      apply: (b: Uint8Array) => {
        const out = Buffer.from(b)
        for (const [f, x] of flips) out[pos(f, out.length)] = x
        return out
      },
    })),
    fc.uint8Array({ maxLength: 512 }).map((bytes) => ({ kind: 'random', apply: () => Buffer.from(bytes) })),
  ]
  const offsets = options.derOffsets
  if (offsets?.length) {
    arbs.push(
      fc.tuple(fc.nat(offsets.length - 1), fc.oneof(byte, fc.constantFrom(0x00, 0x7f, 0x80, 0x81, 0x82, 0x84, 0x88, 0xff), fc.integer({ min: -3, max: 3 }))).map(([i, v]) => ({
        kind: 'der-length',
        apply: (b: Uint8Array) => {
          const out = Buffer.from(b)
          const o = offsets[i]!
          // Small values nudge the length by a few; others replace the first length octet.
          out[o] = v >= -3 && v <= 3 && v !== 0 ? (out[o]! + v) & 0xff : v & 0xff
          return out
        },
      })),
    )
  }
  const tokens = options.tokens
  if (tokens?.length) {
    arbs.push(
      fc.tuple(at, fc.constantFrom(...tokens)).map(([f, t]) => ({
        kind: 'token',
        apply: (b: Uint8Array) => {
          const p = pos(f, b.length + 1)
          return Buffer.concat([b.subarray(0, p), Buffer.from(t, 'utf8'), b.subarray(p)])
        },
      })),
    )
  }
  return fc.oneof(...arbs)
}

/** Several mutations applied in turn (most inputs get one; some get up to three). */
export function mutationsArb(options: Parameters<typeof mutationArb>[0] = {}): fc.Arbitrary<Mutation[]> {
  return fc.array(mutationArb(options), { minLength: 1, maxLength: 3 })
}

export function applyAll(input: Uint8Array, mutations: Mutation[]): Buffer {
  let out: Buffer = Buffer.from(input)
  for (const m of mutations) out = m.apply(out)
  return out
}

export const kinds = (mutations: Mutation[]) => mutations.map((m) => m.kind).join('+')

/**
 * Sends one request through the real app and files the outcome: 2xx/3xx accepted, 4xx refused, 5xx a
 * fiveHundred, a thrown error (inject rejects only when the app breaks) a crash. Returns the response.
 */
export async function classifyResponse<R extends { statusCode: number; body: string }>(tally: Tally, send: () => Promise<R>, describe: () => string): Promise<R | undefined> {
  const start = performance.now()
  try {
    const res = await send()
    const ms = performance.now() - start
    const outcome: Outcome = res.statusCode >= 500 ? 'fiveHundreds' : res.statusCode >= 400 ? 'refused' : 'accepted'
    tally.add(outcome, ms, () => `${res.statusCode} ${res.body.slice(0, 200)} <- ${describe()}`, ENDPOINT_HANG_MS)
    return res
  } catch (err) {
    tally.add('crashes', performance.now() - start, () => `${(err as Error)?.stack ?? String(err)} <- ${describe()}`, ENDPOINT_HANG_MS)
    return undefined
  }
}
