import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { domainToASCII } from 'node:url';
import type { Logger } from 'pino';
import { parseAddressList, parseHeaderBlock } from '../mime/headers.ts';

/**
 * DKIM signing (RFC 6376, Ed25519 per RFC 8463) of outgoing mail.
 *
 * Keys live as PEM files `<dir>/<domain>/<selector>.<rsa|ed25519>.key`, one per
 * selector, created by `postern dkim generate`. The signer picks the keys of the
 * From domain (the newest of each algorithm) and returns the DKIM-Signature
 * field(s) to prepend to the message. Signing is relaxed/relaxed; From (and the
 * other fields a reader sees) is oversigned, so a second one cannot be added.
 */

/** What `generate` can create. */
export type DkimKeyType = 'rsa-2048' | 'ed25519';
/** What a stored key is: `rsa-<bits>` (a key imported from elsewhere may be 1024 or 4096) or ed25519. */
export type DkimKeyAlgorithm = 'ed25519' | `rsa-${number}`;

export interface DkimKeyInfo {
  domain: string;
  selector: string;
  algorithm: DkimKeyAlgorithm;
  /** Absolute path of the private key (PEM). */
  file: string;
  /** DNS name of the TXT record: `<selector>._domainkey.<domain>` (no trailing dot). */
  txtName: string;
  /** The TXT record's value, unsplit: `v=DKIM1; k=rsa; p=…`. */
  txtValue: string;
}

/** A bad domain or selector, or a key that exists already: the message says what to do. */
export class DkimKeyError extends Error {}

const KEY_FILE = /^(.+)\.(rsa|ed25519)\.key$/;
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const SELECTOR = /^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*$/i;

/** Lower-cased ASCII (punycode) form of a domain, or a DkimKeyError naming what is wrong. */
export function normalizeDkimDomain(input: string): string {
  const raw = input.trim().replace(/\.$/, '').toLowerCase();
  const ascii = raw && /^[\x00-\x7f]*$/.test(raw) ? raw : domainToASCII(raw);
  const labels = ascii.split('.');
  if (!ascii || ascii.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l))) {
    throw new DkimKeyError(`"${input}" is not a domain name (expected something like example.org)`);
  }
  return ascii;
}

function defaultSelector(type: DkimKeyType, now = new Date()): string {
  const ym = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  // Distinct by default, so an RSA and an Ed25519 key of the same month can both be published.
  return type === 'ed25519' ? `postern${ym}ed` : `postern${ym}`;
}

function describe(domain: string, selector: string, file: string, key: crypto.KeyObject): DkimKeyInfo {
  const pub = crypto.createPublicKey(key);
  const spki = pub.export({ type: 'spki', format: 'der' });
  const txtName = `${selector}._domainkey.${domain}`;
  if (key.asymmetricKeyType === 'ed25519') {
    // RFC 8463 §4.2: p= is the base64 of the raw 32-byte public key, not the SPKI structure.
    return { domain, selector, algorithm: 'ed25519', file, txtName, txtValue: `v=DKIM1; k=ed25519; p=${spki.subarray(spki.length - 32).toString('base64')}` };
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return { domain, selector, algorithm: `rsa-${bits}`, file, txtName, txtValue: `v=DKIM1; k=rsa; p=${spki.toString('base64')}` };
  }
  throw new DkimKeyError(`${file}: unsupported key type ${key.asymmetricKeyType ?? '?'} (DKIM uses rsa or ed25519)`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

/** Writes a file atomically (tmp + fsync + link) with mode 0600; never replaces an existing file. */
async function writeNewFile(file: string, data: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  const fh = await fs.open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.chmod(0o600);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    // link() fails with EEXIST rather than replacing a key created meanwhile.
    await fs.link(tmp, file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      await fs.rm(tmp, { force: true });
      throw new DkimKeyError(`${file} exists already; choose another --selector (a published selector must keep its key)`);
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await fs.rename(tmp, file); // file systems without hard links
    return syncDir(path.dirname(file));
  }
  await fs.rm(tmp, { force: true });
  await syncDir(path.dirname(file));
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await fs.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // not supported everywhere; the rename itself is what matters
  }
}

/**
 * Creates a DKIM key for a domain: RSA 2048 (rsa-sha256, the default) or Ed25519
 * (ed25519-sha256, RFC 8463). Returns the TXT record to publish.
 */
export async function generateDkimKey(
  dir: string,
  domain: string,
  opts: { selector?: string; algorithm?: DkimKeyType } = {},
): Promise<DkimKeyInfo> {
  const d = normalizeDkimDomain(domain);
  const type = opts.algorithm ?? 'rsa-2048';
  if (type !== 'rsa-2048' && type !== 'ed25519') throw new DkimKeyError(`unknown algorithm "${String(type)}" (expected rsa-2048 or ed25519)`);
  const selector = (opts.selector ?? defaultSelector(type)).trim();
  if (!SELECTOR.test(selector) || selector.length > 63) {
    throw new DkimKeyError(`"${selector}" is not a valid selector (letters, digits and "-", like postern202612)`);
  }
  const domainDir = path.join(dir, d);
  await fs.mkdir(domainDir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700).catch(() => undefined);
  await fs.chmod(domainDir, 0o700).catch(() => undefined);
  for (const kind of ['rsa', 'ed25519']) {
    const other = path.join(domainDir, `${selector}.${kind}.key`);
    if (await exists(other)) throw new DkimKeyError(`${other} exists already: selector ${selector} of ${d} is taken; choose another --selector`);
  }
  const kind = type === 'ed25519' ? 'ed25519' : 'rsa';
  const { privateKey } =
    kind === 'ed25519' ? crypto.generateKeyPairSync('ed25519') : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const file = path.join(domainDir, `${selector}.${kind}.key`);
  await writeNewFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  return describe(d, selector, file, privateKey);
}

interface LoadedKey extends DkimKeyInfo {
  key: crypto.KeyObject;
  mtimeMs: number;
}

/** The keys of one domain directory, newest first (by file time, then selector). Unreadable files are reported, not fatal. */
async function loadDomainKeys(dir: string, domain: string, onError: (file: string, err: unknown) => void): Promise<LoadedKey[]> {
  const domainDir = path.join(dir, domain);
  let names: string[];
  try {
    names = await fs.readdir(domainDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
  const out: LoadedKey[] = [];
  for (const name of names.sort()) {
    const m = KEY_FILE.exec(name);
    if (!m) continue;
    const file = path.join(domainDir, name);
    try {
      const [pem, st] = await Promise.all([fs.readFile(file), fs.stat(file)]);
      const key = crypto.createPrivateKey(pem);
      if (key.asymmetricKeyType !== m[2]) throw new Error(`file name says ${m[2]} but the key is ${key.asymmetricKeyType ?? '?'}`);
      out.push({ ...describe(domain, m[1]!, file, key), key, mtimeMs: st.mtimeMs });
    } catch (err) {
      onError(file, err);
    }
  }
  return out.sort((a, b) => b.mtimeMs - a.mtimeMs || b.selector.localeCompare(a.selector));
}

/** Every key in the directory with its TXT record (derived again from the private key), by domain, newest first. */
export async function listDkimKeys(dir: string): Promise<DkimKeyInfo[]> {
  let domains: string[];
  try {
    domains = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: DkimKeyInfo[] = [];
  for (const d of domains.sort()) {
    const keys = await loadDomainKeys(dir, d, (file, err) => {
      throw new DkimKeyError(`${file}: ${(err as Error).message}`);
    });
    for (const { key: _key, mtimeMs: _m, ...info } of keys) out.push(info);
  }
  return out;
}

/** Fields signed when present; the ones a reader sees are also oversigned (listed once more than they occur). */
const SIGNED = [
  'from', 'sender', 'reply-to', 'subject', 'date', 'message-id', 'to', 'cc',
  'mime-version', 'content-type', 'content-transfer-encoding', 'content-id', 'content-description',
  'resent-date', 'resent-from', 'resent-sender', 'resent-to', 'resent-cc', 'resent-message-id',
  'in-reply-to', 'references',
  'list-id', 'list-help', 'list-unsubscribe', 'list-unsubscribe-post', 'list-subscribe', 'list-post', 'list-owner', 'list-archive',
  'feedback-id', 'autocrypt', 'openpgp',
];
const OVERSIGNED = new Set(['from', 'reply-to', 'subject', 'date', 'message-id', 'to', 'cc', 'mime-version', 'content-type', 'content-transfer-encoding']);

/** Splits a message into its header block and body (binary strings). */
function split(message: Buffer): { header: string; body: string } {
  const text = message.toString('latin1');
  if (/^\r?\n/.test(text)) return { header: '', body: text.replace(/^\r?\n/, '') };
  const m = /\r?\n\r?\n/.exec(text);
  if (!m) return { header: text, body: '' };
  return { header: text.slice(0, m.index + m[0].indexOf('\n') + 1), body: text.slice(m.index + m[0].length) };
}

/** Raw header fields, folding kept, in message order. */
function rawFields(header: string): Array<{ name: string; raw: string }> {
  const out: Array<{ name: string; raw: string }> = [];
  for (const line of header.split(/(?<=\n)/)) {
    if (line === '\r\n' || line === '\n' || line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && out.length) {
      out[out.length - 1]!.raw += line;
      continue;
    }
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.push({ name: line.slice(0, i).trim().toLowerCase(), raw: line });
  }
  return out;
}

/** RFC 6376 §3.4.2 relaxed header canonicalization of one field, with CRLF. */
function relaxedHeader(raw: string): string {
  const i = raw.indexOf(':');
  const name = raw.slice(0, i).trim().toLowerCase();
  const value = raw
    .slice(i + 1)
    .replace(/\r?\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .trim();
  return `${name}:${value}\r\n`;
}

/** RFC 6376 §3.4.4 relaxed body canonicalization, hashed. */
function relaxedBodyHash(body: string): string {
  const lines = body.split(/\r?\n/).map((l) => l.replace(/[ \t]+/g, ' ').replace(/ $/, ''));
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  const canon = lines.length ? lines.join('\r\n') + '\r\n' : '';
  return crypto.createHash('sha256').update(Buffer.from(canon, 'latin1')).digest('base64');
}

/** Folds a DKIM-Signature field: tags on their own lines where needed, long values (h=, b=) broken with FWS. */
function formatSignature(tags: Array<[string, string]>): string {
  const lines: string[] = [];
  let cur = 'DKIM-Signature:';
  const push = (s: string) => {
    if (cur.length + 1 + s.length > 76 && cur.trim() !== '') {
      lines.push(cur);
      cur = '\t' + s;
    } else {
      cur += ' ' + s;
    }
  };
  for (const [k, v] of tags) {
    const last = k === 'b';
    const text = `${k}=${v}${last ? '' : ';'}`;
    if (text.length <= 74) {
      push(text);
      continue;
    }
    // Long value: break it into pieces; FWS is allowed inside h= (around ':') and b= (base64).
    const pieces: string[] = [];
    if (k === 'h') {
      const names = v.split(':');
      let p = 'h=';
      for (let i = 0; i < names.length; i++) {
        const n = names[i] + (i < names.length - 1 ? ':' : ';');
        if (p.length + n.length > 74) {
          pieces.push(p);
          p = '';
        }
        p += n;
      }
      pieces.push(p);
    } else {
      const all = text;
      for (let i = 0; i < all.length; i += 72) pieces.push(all.slice(i, i + 72));
    }
    for (const p of pieces) {
      lines.push(cur);
      cur = '\t' + p;
    }
  }
  lines.push(cur);
  return lines.join('\r\n');
}

interface CacheEntry {
  mtimeNs: bigint;
  names: string;
  /** True once the directory's mtime is old enough that a change would move it (coarse timestamps). */
  settled: boolean;
  keys: LoadedKey[];
}

/**
 * Signs outgoing mail with the keys of its From domain. Keys are cached per domain
 * and read again when the domain's directory changes, so a key made with
 * `postern dkim generate` while the server runs is used from the next message on.
 */
export class DkimSigner {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly enabled: boolean;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
    opts: { enabled: boolean } = { enabled: true },
  ) {
    this.enabled = opts.enabled;
  }

  /**
   * The DKIM-Signature field(s) for a message, ending with CRLF, to prepend to it;
   * '' when signing is off, the From domain has no key, or signing fails (logged):
   * the message then goes out unsigned.
   */
  async sign(message: Buffer): Promise<string> {
    if (!this.enabled) return '';
    let domain: string | null = null;
    try {
      const { header, body } = split(message);
      domain = fromDomain(header);
      if (!domain) return '';
      const keys = await this.keysFor(domain);
      if (!keys.length) return '';
      // The newest key of each algorithm: rsa and ed25519 both sign when both exist.
      const chosen: LoadedKey[] = [];
      for (const k of keys) if (!chosen.some((c) => c.key.asymmetricKeyType === k.key.asymmetricKeyType)) chosen.push(k);
      const fields = rawFields(header);
      const bh = relaxedBodyHash(body);
      const t = String(Math.floor(Date.now() / 1000));
      let out = '';
      for (const k of chosen) out += signWith(k, fields, bh, t) + '\r\n';
      return out;
    } catch (err) {
      this.log.error({ err, domain }, 'DKIM signing failed; the message goes out unsigned');
      return '';
    }
  }

  /** The last look per domain, trusted for a second: one stat per domain per second, not per message. */
  private readonly recent = new Map<string, { at: number; keys: LoadedKey[] }>();

  private async keysFor(domain: string): Promise<LoadedKey[]> {
    const seen = this.recent.get(domain);
    if (seen && Date.now() - seen.at < 1000) return seen.keys;
    const keys = await this.lookUp(domain);
    if (this.recent.size > 10_000) this.recent.clear();
    this.recent.set(domain, { at: Date.now(), keys });
    return keys;
  }

  private async lookUp(domain: string): Promise<LoadedKey[]> {
    const domainDir = path.join(this.dir, domain);
    let st: { mtimeNs: bigint; mtimeMs: bigint } | null = null;
    try {
      st = await fs.stat(domainDir, { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
    }
    if (!st) {
      this.cache.delete(domain);
      return [];
    }
    const cached = this.cache.get(domain);
    if (cached && cached.settled && cached.mtimeNs === st.mtimeNs) return cached.keys;
    // A file system may keep coarse mtimes: until the directory is a little older, compare the names too.
    const names = (await fs.readdir(domainDir)).filter((n) => KEY_FILE.test(n)).sort().join('\n');
    const settled = Date.now() - Number(st.mtimeMs) > 2000;
    if (cached && cached.mtimeNs === st.mtimeNs && cached.names === names) {
      cached.settled = settled;
      return cached.keys;
    }
    const keys = await loadDomainKeys(this.dir, domain, (file, err) => this.log.error({ err, file }, 'unusable DKIM key, skipped'));
    if (keys.length) this.log.info({ domain, selectors: keys.map((k) => `${k.selector} (${k.algorithm})`) }, 'DKIM keys loaded');
    this.cache.set(domain, { mtimeNs: st.mtimeNs, names, settled, keys });
    return keys;
  }
}

/** The domain of the first From address, lower-case ASCII; null without one. */
function fromDomain(header: string): string | null {
  const fields = parseHeaderBlock(header);
  const from = fields.find((f) => f.name === 'from');
  if (!from) return null;
  const addr = parseAddressList(from.value)?.find((a) => a.host);
  if (!addr?.host) return null;
  try {
    return normalizeDkimDomain(addr.host);
  } catch {
    return null;
  }
}

function signWith(k: LoadedKey, fields: Array<{ name: string; raw: string }>, bh: string, t: string): string {
  const ed = k.key.asymmetricKeyType === 'ed25519';
  // Instances of a name are signed bottom-up (RFC 6376 §5.4.2); an extra name signs "absent".
  const h: string[] = [];
  let canon = '';
  for (const name of SIGNED) {
    const present = fields.filter((f) => f.name === name).reverse();
    for (const f of present) {
      h.push(name);
      canon += relaxedHeader(f.raw);
    }
    if (OVERSIGNED.has(name)) h.push(name);
  }
  const tags: Array<[string, string]> = [
    ['v', '1'],
    ['a', ed ? 'ed25519-sha256' : 'rsa-sha256'],
    ['c', 'relaxed/relaxed'],
    ['d', k.domain],
    ['s', k.selector],
    ['t', t],
    ['h', h.join(':')],
    ['bh', bh],
  ];
  const unsigned = formatSignature([...tags, ['b', '']]);
  const data = Buffer.from(canon + relaxedHeader(unsigned).slice(0, -2), 'latin1');
  const b = ed
    ? crypto.sign(null, crypto.createHash('sha256').update(data).digest(), k.key) // RFC 8463 §3: Ed25519 over the SHA-256 hash
    : crypto.sign('sha256', data, k.key);
  return formatSignature([...tags, ['b', b.toString('base64')]]);
}
