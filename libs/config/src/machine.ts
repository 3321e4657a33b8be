import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { arch, machine } from 'node:os';
import { MACHINE_ID_NAMESPACE } from '@spark/protocol/constants';

/**
 * RFC 4122 UUIDv5 (SHA-1, name-based) of `name` in `namespace`, as Python's
 * `uuid.uuid5` computes it.
 */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  if (ns.length !== 16) {
    throw new Error(`namespace ${namespace} is not a UUID`);
  }
  const hash = createHash('sha1').update(ns).update(name, 'utf8').digest();
  hash[6] = ((hash[6] as number) & 0x0f) | 0x50;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The id Laniakea knows a worker by: UUIDv5 of its machine name in spark's
 * namespace (spark/config.py `_make_client_uuid`), so a host keeps its identity
 * when it switches from laniakea-spark.
 */
export function machineIdOf(machineName: string): string {
  return uuidV5(MACHINE_ID_NAMESPACE, machineName);
}

/** The host name as spark reads it: `/etc/hostname`, trimmed. */
export function readHostname(file = '/etc/hostname'): string {
  return readFileSync(file, 'utf8').trim();
}

/**
 * Debian architecture names for this machine, mapped as spark does:
 * x86_64 → amd64, i?86 → i386, aarch64 → arm64, anything else as it is.
 */
export function defaultArchitectures(machineString: string = machineOrArch()): string[] {
  if (machineString === 'x86_64') return ['amd64'];
  if (/^i.86$/.test(machineString)) return ['i386'];
  if (machineString === 'aarch64') return ['arm64'];
  return [machineString];
}

function machineOrArch(): string {
  try {
    return machine();
  } catch {
    return arch();
  }
}
