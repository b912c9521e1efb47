import dgram from 'node:dgram';

/**
 * A small authoritative DNS server for tests (RFC 1035 over UDP on 127.0.0.1): answers A,
 * AAAA, TXT and MX queries from a table, NXDOMAIN for names it does not know, and can be told
 * to stay silent for names (a timeout) or to answer SERVFAIL. Enough for DNSBL, SPF, DKIM and
 * DMARC cases with node's real resolver (dns.promises.Resolver with setServers) in between.
 */
export interface DnsRecords {
  A?: string[];
  AAAA?: string[];
  TXT?: string[];
  MX?: Array<{ priority: number; exchange: string }>;
  /** Never answer (the client times out). */
  silent?: boolean;
  /** Answer SERVFAIL. */
  servfail?: boolean;
}

export interface TestDnsServer {
  port: number;
  /** "127.0.0.1:port", for `[dns] servers` and systemResolver(). */
  address: string;
  /** Sets (or with undefined, removes) the records of a name (case-insensitive, no trailing dot). */
  set(name: string, records: DnsRecords | undefined): void;
  /** Names asked for, in order (lower case). */
  queries: string[];
  close(): Promise<void>;
}

const TYPE = { A: 1, MX: 15, TXT: 16, AAAA: 28 } as const;

export async function startDnsServer(initial: Record<string, DnsRecords> = {}): Promise<TestDnsServer> {
  const table = new Map<string, DnsRecords>(Object.entries(initial).map(([k, v]) => [k.toLowerCase(), v]));
  const queries: string[] = [];
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const q = parseQuestion(msg);
    if (!q) return;
    queries.push(q.name);
    const rec = table.get(q.name);
    if (rec?.silent) return;
    const answers: Buffer[] = [];
    let rcode = 0;
    if (!rec) rcode = 3; // NXDOMAIN
    else if (rec.servfail) rcode = 2;
    else if (q.type === TYPE.A) for (const a of rec.A ?? []) answers.push(rr(q.type, Buffer.from(a.split('.').map(Number))));
    else if (q.type === TYPE.AAAA) for (const a of rec.AAAA ?? []) answers.push(rr(q.type, ipv6(a)));
    else if (q.type === TYPE.TXT) for (const t of rec.TXT ?? []) answers.push(rr(q.type, txt(t)));
    else if (q.type === TYPE.MX) for (const m of rec.MX ?? []) answers.push(rr(q.type, Buffer.concat([u16(m.priority), encodeName(m.exchange)])));
    socket.send(response(msg, q.end, rcode, answers), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const port = socket.address().port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    queries,
    set(name, records) {
      if (records) table.set(name.toLowerCase(), records);
      else table.delete(name.toLowerCase());
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

function parseQuestion(msg: Buffer): { name: string; type: number; end: number } | null {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let i = 12;
  while (i < msg.length && msg[i] !== 0) {
    const n = msg[i]!;
    labels.push(msg.subarray(i + 1, i + 1 + n).toString('latin1'));
    i += n + 1;
  }
  if (i + 5 > msg.length) return null;
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(i + 1), end: i + 5 };
}

/** Header (id and question copied, QR + AA + RD/RA, rcode), the question, the answers. */
function response(query: Buffer, questionEnd: number, rcode: number, answers: Buffer[]): Buffer {
  const head = Buffer.alloc(12);
  query.copy(head, 0, 0, 2);
  head.writeUInt16BE(0x8580 | rcode, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(answers.length, 6);
  return Buffer.concat([head, query.subarray(12, questionEnd), ...answers]);
}

/** An answer for the question's name (compression pointer to offset 12), TTL 60. */
function rr(type: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xc0, 12]), u16(type), u16(1), Buffer.from([0, 0, 0, 60]), u16(data.length), data]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])), Buffer.from([0])]);
}

/** TXT RDATA: character-strings of at most 255 octets each. */
function txt(text: string): Buffer {
  const data = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < data.length || i === 0; i += 255) {
    const chunk = data.subarray(i, i + 255);
    out.push(Buffer.from([chunk.length]), chunk);
    if (data.length === 0) break;
  }
  return Buffer.concat(out);
}

function ipv6(addr: string): Buffer {
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => u16(parseInt(g || '0', 16))));
}
