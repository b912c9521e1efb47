import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import type { DnsResolver } from '../../src/net/dns.ts';
import { isNotFound } from '../../src/net/dns.ts';
import { resolveRoute, type Route } from '../../src/queue/routing.ts';

function config(overrides: Partial<ConfigInput> = {}) {
  return parseConfig({ hostname: 'mx.example.test', data_dir: '/nonexistent', domains: ['example.test'], log: { level: 'silent' }, ...overrides }, 'test');
}

function dnsError(code: string): Error {
  return Object.assign(new Error(`query ${code}`), { code, syscall: 'queryMx', hostname: 'x' });
}

type Answer<T> = T | string; // a string is an error code to throw
interface Zone {
  mx?: Record<string, Answer<Array<{ exchange: string; priority: number }>>>;
  a?: Record<string, Answer<string[]>>;
  aaaa?: Record<string, Answer<string[]>>;
}

/** A fake resolver: unknown names are NXDOMAIN; a name known for some type but not another gives ENODATA. */
function fakeResolver(zone: Zone): DnsResolver & { queries: string[] } {
  const names = new Set([...Object.keys(zone.mx ?? {}), ...Object.keys(zone.a ?? {}), ...Object.keys(zone.aaaa ?? {})]);
  const queries: string[] = [];
  function answer<T>(type: string, table: Record<string, Answer<T>> | undefined, name: string): Promise<T> {
    queries.push(`${type} ${name}`);
    const v = table?.[name];
    if (typeof v === 'string') return Promise.reject(dnsError(v));
    if (v !== undefined) return Promise.resolve(v);
    return Promise.reject(dnsError(names.has(name) ? 'ENODATA' : 'ENOTFOUND'));
  }
  return {
    queries,
    resolveMx: (n) => answer('MX', zone.mx, n),
    resolve4: (n) => answer('A', zone.a, n),
    resolve6: (n) => answer('AAAA', zone.aaaa, n),
    resolveTxt: () => Promise.reject(dnsError('ENODATA')),
  };
}

function hosts(route: Route) {
  assert.equal(route.kind, 'hosts', JSON.stringify(route));
  if (route.kind !== 'hosts') throw new Error('unreachable');
  return route.hosts;
}

function fail(route: Route) {
  assert.equal(route.kind, 'fail', JSON.stringify(route));
  if (route.kind !== 'fail') throw new Error('unreachable');
  return route;
}

/** A random source returning the given values in turn. */
function seq(...values: number[]) {
  let i = 0;
  return () => values[i++ % values.length];
}

test('isNotFound: ENOTFOUND/ENODATA are permanent, the rest temporary', () => {
  assert.equal(isNotFound(dnsError('ENOTFOUND')), true);
  assert.equal(isNotFound(dnsError('ENODATA')), true);
  for (const c of ['ESERVFAIL', 'ETIMEOUT', 'ECONNREFUSED', 'EREFUSED']) assert.equal(isNotFound(dnsError(c)), false, c);
  assert.equal(isNotFound(new Error('x')), false);
  assert.equal(isNotFound(undefined), false);
});

test('MX records in preference order, every MX host kept as a fallback', async () => {
  const r = fakeResolver({
    mx: { 'remote.test': [{ exchange: 'mx3.remote.test', priority: 30 }, { exchange: 'mx1.remote.test', priority: 10 }, { exchange: 'mx2.remote.test', priority: 20 }] },
    a: { 'mx1.remote.test': ['192.0.2.1'], 'mx2.remote.test': ['192.0.2.2'], 'mx3.remote.test': ['192.0.2.3'] },
  });
  const route = await resolveRoute('remote.test', config(), r);
  assert.equal(route.kind === 'hosts' && route.via, 'mx');
  const h = hosts(route);
  assert.deepEqual(h.map((x) => [x.name, x.address, x.preference]), [
    ['mx1.remote.test', '192.0.2.1', 10],
    ['mx2.remote.test', '192.0.2.2', 20],
    ['mx3.remote.test', '192.0.2.3', 30],
  ]);
  for (const x of h) {
    assert.equal(x.port, 25);
    assert.equal(x.tls, 'may');
    assert.equal(x.lmtp, false);
    assert.equal(x.auth, undefined);
  }
});

test('equal-preference MX records are shuffled (deterministic with opts.random)', async () => {
  const r = fakeResolver({
    mx: { 'remote.test': [{ exchange: 'a.remote.test', priority: 10 }, { exchange: 'b.remote.test', priority: 10 }, { exchange: 'c.remote.test', priority: 10 }, { exchange: 'z.remote.test', priority: 5 }] },
    a: { 'a.remote.test': ['192.0.2.1'], 'b.remote.test': ['192.0.2.2'], 'c.remote.test': ['192.0.2.3'], 'z.remote.test': ['192.0.2.9'] },
  });
  const order = async (random: () => number) => hosts(await resolveRoute('remote.test', config(), r, { random })).map((h) => h.name[0]);
  // Fisher-Yates from the end: random 0.99 keeps every element in place.
  assert.deepEqual(await order(() => 0.99), ['z', 'a', 'b', 'c']);
  // random 0 swaps each last element with the first: [a,b,c] → [c,b,a] → [b,c,a].
  assert.deepEqual(await order(() => 0), ['z', 'b', 'c', 'a']);
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await order(seq(i / 6, ((i * 5) % 6) / 6))).join(''));
  assert.ok(seen.size > 1, 'different random values give different orders');
  for (const o of seen) assert.equal(o[0], 'z', 'lower preference always first');
});

test('AAAA and A addresses both used, one host per address, IPv4 first', async () => {
  const r = fakeResolver({
    mx: { 'remote.test': [{ exchange: 'mx1.remote.test.', priority: 10 }, { exchange: 'mx2.remote.test', priority: 20 }] },
    a: { 'mx1.remote.test': ['192.0.2.1', '192.0.2.11'], 'mx2.remote.test': ['192.0.2.2'] },
    aaaa: { 'mx1.remote.test': ['2001:db8::1'], 'mx2.remote.test': ['2001:db8::2'] },
  });
  const h = hosts(await resolveRoute('remote.test', config(), r));
  assert.deepEqual(h.map((x) => [x.name, x.address]), [
    ['mx1.remote.test', '192.0.2.1'],
    ['mx1.remote.test', '192.0.2.11'],
    ['mx1.remote.test', '2001:db8::1'],
    ['mx2.remote.test', '192.0.2.2'],
    ['mx2.remote.test', '2001:db8::2'],
  ]);
});

test('host list capped at 20', async () => {
  const a: Record<string, string[]> = {};
  const mx = [];
  for (let i = 0; i < 10; i++) {
    mx.push({ exchange: `mx${i}.remote.test`, priority: i });
    a[`mx${i}.remote.test`] = [`192.0.2.${i * 3 + 1}`, `192.0.2.${i * 3 + 2}`, `192.0.2.${i * 3 + 3}`];
  }
  const h = hosts(await resolveRoute('remote.test', config(), fakeResolver({ mx: { 'remote.test': mx }, a })));
  assert.equal(h.length, 20);
  assert.equal(h[0].address, '192.0.2.1');
});

test('no MX records: implicit MX on the domain’s own addresses, preference 0', async () => {
  const r = fakeResolver({ a: { 'remote.test': ['192.0.2.7'] }, aaaa: { 'remote.test': ['2001:db8::7'] } });
  const route = await resolveRoute('Remote.Test.', config({ queue: { mx_port: 2525 } }), r);
  assert.equal(route.kind === 'hosts' && route.via, 'implicit-mx');
  assert.deepEqual(hosts(route).map((x) => [x.name, x.address, x.port, x.preference]), [
    ['remote.test', '192.0.2.7', 2525, 0],
    ['remote.test', '2001:db8::7', 2525, 0],
  ]);
  // Empty MX answer (no error) behaves the same.
  const r2 = fakeResolver({ mx: { 'remote.test': [] }, a: { 'remote.test': ['192.0.2.7'] } });
  assert.equal((await resolveRoute('remote.test', config(), r2)).kind, 'hosts');
});

test('null MX → permanent 5.1.10', async () => {
  for (const exchange of ['', '.']) {
    const r = fakeResolver({ mx: { 'remote.test': [{ exchange, priority: 0 }] }, a: { 'remote.test': ['192.0.2.7'] } });
    const f = fail(await resolveRoute('remote.test', config(), r));
    assert.equal(f.permanent, true);
    assert.equal(f.status, '5.1.10');
    assert.equal(f.message, 'domain does not accept mail (null MX, RFC 7505)');
  }
});

test('NXDOMAIN → permanent 5.1.2 domain not found', async () => {
  const f = fail(await resolveRoute('nowhere.test', config(), fakeResolver({})));
  assert.equal(f.permanent, true);
  assert.equal(f.status, '5.1.2');
  assert.equal(f.message, 'domain not found');
});

test('domain exists but has no MX or address records → permanent 5.1.2', async () => {
  const f = fail(await resolveRoute('remote.test', config(), fakeResolver({ mx: { 'remote.test': 'ENODATA' }, a: { 'remote.test': 'ENODATA' }, aaaa: { 'remote.test': 'ENODATA' } })));
  assert.equal(f.permanent, true);
  assert.equal(f.status, '5.1.2');
});

test('SERVFAIL / timeout on the MX query → temporary 4.4.3, never permanent', async () => {
  for (const code of ['ESERVFAIL', 'ETIMEOUT', 'ECONNREFUSED', 'EREFUSED']) {
    const r = fakeResolver({ mx: { 'remote.test': code }, a: { 'remote.test': ['192.0.2.7'] } });
    const f = fail(await resolveRoute('remote.test', config(), r));
    assert.equal(f.permanent, false, code);
    assert.equal(f.status, '4.4.3');
    assert.match(f.message, new RegExp(code));
  }
  // Also a resolver that throws something without a code.
  const weird: DnsResolver = { ...fakeResolver({}), resolveMx: () => Promise.reject(new Error('boom')) };
  const f = fail(await resolveRoute('remote.test', config(), weird));
  assert.equal(f.permanent, false);
  assert.equal(f.status, '4.4.3');
});

test('temporary failure on the implicit-MX address lookup → 4.4.3', async () => {
  const r = fakeResolver({ mx: { 'remote.test': 'ENODATA' }, a: { 'remote.test': 'ETIMEOUT' }, aaaa: { 'remote.test': 'ENODATA' } });
  const f = fail(await resolveRoute('remote.test', config(), r));
  assert.equal(f.permanent, false);
  assert.equal(f.status, '4.4.3');
});

test('MX hosts that do not resolve are skipped', async () => {
  const r = fakeResolver({
    mx: { 'remote.test': [{ exchange: 'gone.remote.test', priority: 5 }, { exchange: 'slow.remote.test', priority: 7 }, { exchange: 'mx.remote.test', priority: 10 }] },
    a: { 'slow.remote.test': 'ETIMEOUT', 'mx.remote.test': ['192.0.2.1'] },
    aaaa: { 'slow.remote.test': 'ESERVFAIL' },
  });
  assert.deepEqual(hosts(await resolveRoute('remote.test', config(), r)).map((h) => h.name), ['mx.remote.test']);
});

test('only AAAA failing temporarily still uses the A addresses', async () => {
  const r = fakeResolver({ mx: { 'remote.test': [{ exchange: 'mx.remote.test', priority: 5 }] }, a: { 'mx.remote.test': ['192.0.2.1'] }, aaaa: { 'mx.remote.test': 'ETIMEOUT' } });
  assert.deepEqual(hosts(await resolveRoute('remote.test', config(), r)).map((h) => h.address), ['192.0.2.1']);
});

test('no MX host resolves: temporary if any lookup failed temporarily, else permanent 5.4.4', async () => {
  const mx = { 'remote.test': [{ exchange: 'gone.remote.test', priority: 5 }, { exchange: 'slow.remote.test', priority: 7 }] };
  const t = fail(await resolveRoute('remote.test', config(), fakeResolver({ mx, a: { 'slow.remote.test': 'ETIMEOUT' }, aaaa: { 'slow.remote.test': 'ETIMEOUT' } })));
  assert.equal(t.permanent, false);
  assert.equal(t.status, '4.4.3');
  const p = fail(await resolveRoute('remote.test', config(), fakeResolver({ mx })));
  assert.equal(p.permanent, true);
  assert.equal(p.status, '5.4.4');
  assert.equal(p.message, 'no usable MX host');
});

test('MX exchanges that are IP literals are skipped unless nothing else exists', async () => {
  const r = fakeResolver({
    mx: { 'remote.test': [{ exchange: '192.0.2.99', priority: 1 }, { exchange: 'mx.remote.test', priority: 10 }], 'lit.test': [{ exchange: '192.0.2.98', priority: 1 }] },
    a: { 'mx.remote.test': ['192.0.2.1'] },
  });
  assert.deepEqual(hosts(await resolveRoute('remote.test', config(), r)).map((h) => h.address), ['192.0.2.1']);
  assert.deepEqual(hosts(await resolveRoute('lit.test', config(), r)).map((h) => h.address), ['192.0.2.98']);
  assert.equal(r.queries.includes('A 192.0.2.99'), false, 'IP literal never looked up as a name');
});

test('address literals deliver directly', async () => {
  const r = fakeResolver({});
  const v4 = await resolveRoute('[192.0.2.1]', config({ queue: { mx_port: 2525 } }), r);
  assert.equal(v4.kind === 'hosts' && v4.via, 'literal');
  assert.deepEqual(hosts(v4).map((h) => [h.address, h.port, h.tls]), [['192.0.2.1', 2525, 'may']]);
  const v6 = await resolveRoute('[IPv6:2001:db8::1]', config(), r);
  assert.deepEqual(hosts(v6).map((h) => h.address), ['2001:db8::1']);
  assert.deepEqual(hosts(await resolveRoute('[127.0.0.1]', config(), r)).map((h) => h.address), ['127.0.0.1']);
  assert.equal(r.queries.length, 0);
  for (const bad of ['[999.0.0.1]', '[2001:db8::1]', '[IPv6:192.0.2.1]']) {
    const f = fail(await resolveRoute(bad, config(), r));
    assert.equal(f.permanent, true, bad);
  }
});

test('tls_required_domains makes MX routes require TLS', async () => {
  const r = fakeResolver({ mx: { 'secure.test': [{ exchange: 'mx.secure.test', priority: 1 }], 'other.test': [{ exchange: 'mx.secure.test', priority: 1 }] }, a: { 'mx.secure.test': ['192.0.2.1'] } });
  const c = config({ queue: { tls_required_domains: ['Secure.Test'] } });
  assert.equal(hosts(await resolveRoute('secure.TEST', c, r))[0].tls, 'required');
  assert.equal(hosts(await resolveRoute('other.test', c, r))[0].tls, 'may');
});

test('transport: exact, .subdomain and * matching, first match wins, case-insensitive', async () => {
  const r = fakeResolver({ a: { 'relay-b.test': ['192.0.2.20'] }, aaaa: { 'relay-b.test': ['2001:db8::20'] } });
  const c = config({
    transport: [
      { domain: 'Remote.Test', relay: '192.0.2.10:2525', tls: 'none', lmtp: true },
      { domain: '.remote.test', relay: 'relay-b.test:26', tls: 'required' },
      { domain: '*', relay: '[2001:db8::30]:587' },
    ],
    queue: { relayhost: '192.0.2.99:25' },
  });
  const exact = await resolveRoute('REMOTE.test', c, r);
  assert.equal(exact.kind === 'hosts' && exact.via, 'transport');
  assert.deepEqual(hosts(exact).map((h) => [h.name, h.address, h.port, h.tls, h.lmtp]), [['192.0.2.10', '192.0.2.10', 2525, 'none', true]]);
  const sub = hosts(await resolveRoute('a.b.Remote.test', c, r));
  assert.deepEqual(sub.map((h) => [h.name, h.address, h.port, h.tls, h.lmtp]), [
    ['relay-b.test', '192.0.2.20', 26, 'required', false],
    ['relay-b.test', '2001:db8::20', 26, 'required', false],
  ]);
  // ".remote.test" does not match remote.test itself; "*" catches everything else (before relayhost).
  const c2 = config({ transport: [{ domain: '.remote.test', relay: '192.0.2.10:25' }, { domain: '*', relay: '[2001:db8::30]:587' }] });
  assert.deepEqual(hosts(await resolveRoute('remote.test', c2, r)).map((h) => [h.address, h.port, h.tls]), [['2001:db8::30', 587, 'may']]);
  assert.deepEqual(hosts(await resolveRoute('elsewhere.test', c, r)).map((h) => h.address), ['2001:db8::30']);
  assert.equal(r.queries.filter((q) => q.startsWith('MX')).length, 0, 'no MX lookups for transport routes');
});

test('transport with credentials, and a relay name that does not resolve is a temporary failure', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-routing-'));
  try {
    fs.writeFileSync(path.join(dir, 'pw'), '  s3cret  \nsecond line\n');
    const c = config({ transport: [{ domain: 'remote.test', relay: 'relay.test:587', username: 'u1', password_file: path.join(dir, 'pw') }] });
    const ok = hosts(await resolveRoute('remote.test', c, fakeResolver({ a: { 'relay.test': ['192.0.2.5'] } })));
    assert.deepEqual(ok.map((h) => [h.address, h.port, h.auth]), [['192.0.2.5', 587, { user: 'u1', pass: 's3cret' }]]);
    const nx = fail(await resolveRoute('remote.test', c, fakeResolver({})));
    assert.equal(nx.permanent, false);
    assert.match(nx.message, /transport "remote\.test"/);
    assert.match(nx.message, /relay\.test/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('relayhost: all remote mail, TLS required, credentials from the password file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-routing-'));
  try {
    const pw = path.join(dir, 'relay.pw');
    fs.writeFileSync(pw, 'hunter2\n');
    const c = config({ queue: { relayhost: 'smarthost.test:587', relay_username: 'me@example.test', relay_password_file: pw, mx_port: 2525 } });
    const r = fakeResolver({ a: { 'smarthost.test': ['192.0.2.50'] }, aaaa: { 'smarthost.test': ['2001:db8::50'] } });
    const route = await resolveRoute('anywhere.test', c, r);
    assert.equal(route.kind === 'hosts' && route.via, 'relayhost');
    assert.deepEqual(hosts(route).map((h) => [h.name, h.address, h.port, h.tls, h.auth, h.lmtp]), [
      ['smarthost.test', '192.0.2.50', 587, 'required', { user: 'me@example.test', pass: 'hunter2' }, false],
      ['smarthost.test', '2001:db8::50', 587, 'required', { user: 'me@example.test', pass: 'hunter2' }, false],
    ]);
    // IP-literal relayhost, no credentials: no DNS at all.
    const r2 = fakeResolver({});
    const lit = hosts(await resolveRoute('anywhere.test', config({ queue: { relayhost: '[::1]:2025' } }), r2));
    assert.deepEqual(lit.map((h) => [h.address, h.port, h.tls, h.auth]), [['::1', 2025, 'required', undefined]]);
    assert.equal(r2.queries.length, 0);
    // A transport match is used before the relayhost.
    const c3 = config({ queue: { relayhost: '127.0.0.1:2025' }, transport: [{ domain: 'lmtp.test', relay: '127.0.0.1:24', lmtp: true }] });
    const t = await resolveRoute('lmtp.test', c3, r2);
    assert.equal(t.kind === 'hosts' && t.via, 'transport');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('missing password file → temporary failure naming the config key', async () => {
  const missing = path.join(os.tmpdir(), 'postern-routing-does-not-exist', 'pw');
  const c = config({ queue: { relayhost: '192.0.2.1:587', relay_username: 'me', relay_password_file: missing } });
  const f = fail(await resolveRoute('anywhere.test', c, fakeResolver({})));
  assert.equal(f.permanent, false);
  assert.match(f.status, /^4\./);
  assert.match(f.message, /queue\.relay_password_file/);
  const c2 = config({ transport: [{ domain: '*', relay: '192.0.2.1:587', username: 'u', password_file: missing }] });
  const f2 = fail(await resolveRoute('anywhere.test', c2, fakeResolver({})));
  assert.equal(f2.permanent, false);
  assert.match(f2.message, /password_file/);
  assert.match(f2.message, /transport "\*"/);
});

test('a temporary relayhost lookup failure defers', async () => {
  const c = config({ queue: { relayhost: 'smarthost.test:25' } });
  const f = fail(await resolveRoute('anywhere.test', c, fakeResolver({ a: { 'smarthost.test': 'ETIMEOUT' }, aaaa: { 'smarthost.test': 'ETIMEOUT' } })));
  assert.equal(f.permanent, false);
  assert.equal(f.status, '4.4.3');
  assert.match(f.message, /queue\.relayhost/);
});
