/** Field schemas the admin resources share. */
import { z } from 'zod'

/**
 * Free text an administrator types or filters by: no control characters (Postgres text cannot even hold
 * U+0000, and a name with a line break would forge lines wherever it is shown) and no lone surrogate
 * (not encodable as UTF-8, so it would reach the database altered).
 */
export const plainText = (max: number) => checkedText(z.string(), max)

/** The same, after removing leading and trailing white space; at least one character must remain. */
export const trimmedText = (max: number) => checkedText(z.string().trim().min(1), max)

const checkedText = (s: z.ZodString, max: number) => s.max(max).regex(/^[^\p{Cc}\p{Cs}]*$/u, 'must not contain control characters')

/** `{id}` in a path: a malformed id is a 400, an unknown one a 404. */
export const idParams = z.strictObject({ id: z.uuid() })

export const isoDate = (d: Date) => d.toISOString()
