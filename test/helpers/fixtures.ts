/** Recorded device traffic in test/fixtures (provenance in test/fixtures/README.md). */
import { readFileSync } from 'node:fs'

const dir = new URL('../fixtures/', import.meta.url)

export function fixtureText(name: string): string {
  return readFileSync(new URL(name, dir), 'utf8')
}

export function fixtureBytes(name: string): Buffer {
  return readFileSync(new URL(name, dir))
}

/** A `.b64` fixture decoded. */
export function fixtureBase64(name: string): Buffer {
  return Buffer.from(fixtureText(name).replace(/\s+/g, ''), 'base64')
}
