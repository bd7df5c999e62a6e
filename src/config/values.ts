/** Building blocks of the configuration schema (src/config.ts): value types and the error it throws. */
import { z } from 'zod'

/** A configuration problem: `variable` is the environment variable to fix. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`)
    this.name = 'ConfigError'
  }
}

export type Environment = Record<string, string | undefined>

export const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes')

export const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))

/** Durations: `90`, `90s`, `15m`, `1h`, `7d`; returned in seconds. */
export const duration = z
  .string()
  .regex(/^\d+\s*(s|m|h|d)?$/, 'expected a duration such as 90s, 15m, 1h or 7d')
  .transform((v) => {
    const n = Number.parseInt(v, 10)
    const unit = v.trim().slice(-1)
    const factor = unit === 'm' ? 60 : unit === 'h' ? 3600 : unit === 'd' ? 86400 : 1
    return n * factor
  })

/** A JSON member name of an ID token or userinfo response. */
export const claimName = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'expected a claim name')

export const url = z.url({ message: 'expected an absolute http(s) URL' }).refine((v) => /^https?:\/\//.test(v), {
  message: 'expected an absolute http(s) URL',
})

/**
 * A PEM value given either inline (the variable holds the PEM text) or as a path to a PEM file. Kept as
 * the raw string here; `readPem` resolves it after the schema has run.
 */
export const pemOrPath = z.string().min(1)

