/** Runs the openssl command line (an independent implementation) on files in a temporary directory. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

export interface OpensslRun {
  dir: string
  /** Writes a file into the directory and returns its path. */
  file(name: string, data: string | Uint8Array): string
  read(name: string): Buffer
  run(args: string[], input?: Uint8Array): Buffer
  close(): void
}

export function openssl(): OpensslRun {
  const dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-openssl-'))
  return {
    dir,
    file(name, data) {
      const p = path.join(dir, name)
      writeFileSync(p, data)
      return p
    },
    read: (name) => readFileSync(path.join(dir, name)),
    run: (args, input) => execFileSync('openssl', args, { cwd: dir, input, stdio: ['pipe', 'pipe', 'pipe'] }),
    close: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/** openssl needs the legacy provider for single DES. */
export const LEGACY_PROVIDERS = ['-provider', 'legacy', '-provider', 'default']
