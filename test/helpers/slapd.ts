import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { hash as argon2Hash, Algorithm } from '@node-rs/argon2';
import { encrypt as sha512Crypt } from 'unixcrypt';
import { run } from './cli.ts';
import { makeCert } from './certs.ts';
import { freePort, stopDaemon } from './daemon.ts';
import type { ConfigInput } from '../../src/config/schema.ts';

/**
 * A real OpenLDAP server (Debian's slapd) for the directory tests: its own slapd.conf,
 * schema and mdb database in a temporary directory, on a free loopback port, filled
 * with ldapadd. `stop()`/`start()` take it away and bring it back mid-test;
 * `pause()`/`resume()` freeze it (a server that accepts connections but never answers).
 * It speaks StartTLS on `url` and implicit TLS on `ldapsUrl` with a self-signed
 * certificate for 127.0.0.1 (`caFile`: the file a client trusts).
 *
 * Tree (suffix dc=example,dc=test, password of every user "<uid>-pw" unless noted):
 *   cn=admin            rootdn (password "admin-secret")
 *   cn=postern          the service account Postern binds as ("postern-secret"); may read userPassword
 *   ou=people
 *     uid=alice  {SSHA}    alice@example.test, alternate a.smith@example.test, quota 1G, "Alice Smith"
 *     uid=bob    {ARGON2}  bob@example.test (argon2id, via slapd's argon2 module)
 *     uid=carol  {CRYPT}   carol@example.test ($6$ SHA-512 crypt)
 *     uid=dave   {SSHA}    dave@example.test, accountStatus: disabled
 *     uid=tina   {SSHA}    tina@example.test, visible only over TLS (ACL tls_ssf=1)
 *   ou=groups
 *     cn=staff             staff@example.test: alice, bob, dave (disabled: skipped)
 */
export const SUFFIX = 'dc=example,dc=test';
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
export const ADMIN_PW = 'admin-secret';
export const SERVICE_DN = `cn=postern,${SUFFIX}`;
export const SERVICE_PW = 'postern-secret';
export const PEOPLE = `ou=people,${SUFFIX}`;

const SLAPD = '/usr/sbin/slapd';

/** Why the slapd tests cannot run here, or false. Never skips in CI (.ci/run installs slapd and ldap-utils): it fails instead. */
export function missingSlapd(): string | false {
  if (process.env.CI) return false;
  if (!fs.existsSync(SLAPD)) return 'slapd is not installed (apt-get install slapd ldap-utils); CI installs it';
  if (spawnSync('sh', ['-c', 'command -v ldapadd']).status !== 0) return 'ldapadd is not installed (apt-get install ldap-utils); CI installs it';
  return false;
}

/** RFC 2307 {SSHA}: base64(sha1(password + salt) + salt). */
export function ssha(password: string): string {
  const salt = crypto.randomBytes(8);
  return `{SSHA}${Buffer.concat([crypto.createHash('sha1').update(password).update(salt).digest(), salt]).toString('base64')}`;
}


const SCHEMA = `
attributetype ( 1.3.6.1.4.1.99999.42.1.1 NAME 'mailAlternateAddress'
  DESC 'another address delivered to this user'
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.99999.42.1.2 NAME 'mailQuota'
  DESC 'storage limit' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.42.1.3 NAME 'accountStatus'
  DESC 'active or disabled' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.42.2.1 NAME 'posternMailUser' SUP top AUXILIARY
  MAY ( mailAlternateAddress $ mailQuota $ accountStatus ) )
objectclass ( 1.3.6.1.4.1.99999.42.2.2 NAME 'posternMailGroup' SUP top AUXILIARY
  MAY ( mail ) )
`;

export class Slapd {
  readonly url: string;
  readonly ldapsUrl: string;
  readonly caFile: string;
  private child: ChildProcess | null = null;
  private log = '';

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly ldapsPort: number,
  ) {
    this.url = `ldap://127.0.0.1:${port}`;
    this.ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
    this.caFile = path.join(dir, 'slapd.crt');
  }

  /** Starts slapd with a fresh database holding the test tree. */
  static async create(): Promise<Slapd> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-slapd-'));
    const s = new Slapd(dir, await freePort(), await freePort());
    fs.mkdirSync(path.join(dir, 'db'));
    const cert = await makeCert(dir, 'slapd', ['127.0.0.1']);
    fs.writeFileSync(path.join(dir, 'postern.schema'), SCHEMA);
    fs.writeFileSync(
      path.join(dir, 'slapd.conf'),
      [
        'include /etc/ldap/schema/core.schema',
        'include /etc/ldap/schema/cosine.schema',
        'include /etc/ldap/schema/inetorgperson.schema',
        'include /etc/ldap/schema/nis.schema',
        `include ${dir}/postern.schema`,
        'modulepath /usr/lib/ldap',
        'moduleload back_mdb',
        // {ARGON2} userPassword values (bind mode: slapd verifies them itself).
        'moduleload argon2',
        `pidfile ${dir}/slapd.pid`,
        `TLSCertificateFile ${cert.cert}`,
        `TLSCertificateKeyFile ${cert.key}`,
        `argsfile ${dir}/slapd.args`,
        'database mdb',
        `suffix "${SUFFIX}"`,
        `rootdn "${ADMIN_DN}"`,
        `rootpw ${ADMIN_PW}`,
        `directory ${dir}/db`,
        'maxsize 16777216',
        'index mail,mailAlternateAddress,uid eq',
        // tina exists only for clients over TLS (ldaps:// or StartTLS): the TLS tests see her, plain connections do not.
        `access to dn.exact="uid=tina,${PEOPLE}" by tls_ssf=1 read by * none`,
        // Like a real site: only the service account (compare mode) and the user may see password hashes.
        `access to attrs=userPassword by dn.exact="${SERVICE_DN}" read by self write by anonymous auth by * none`,
        'access to * by * read',
        '',
      ].join('\n'),
    );
    await s.start();
    const [bob, carol] = await Promise.all([argon2Hash('bob-pw', { algorithm: Algorithm.Argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 }), Promise.resolve(sha512Crypt('carol-pw', '$6$saltsalt'))]);
    await s.ldif(
      'ldapadd',
      `
dn: ${SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ${SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: postern
userPassword: ${ssha(SERVICE_PW)}

dn: ${PEOPLE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,${SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: uid=alice,${PEOPLE}
objectClass: inetOrgPerson
objectClass: posternMailUser
uid: alice
cn: Alice Smith
sn: Smith
displayName: Alice Smith
mail: alice@example.test
mailAlternateAddress: a.smith@example.test
mailQuota: 1G
accountStatus: active
userPassword: ${ssha('alice-pw')}

dn: uid=bob,${PEOPLE}
objectClass: inetOrgPerson
objectClass: posternMailUser
uid: bob
cn: Bob
sn: Builder
mail: bob@example.test
userPassword: {ARGON2}${bob}

dn: uid=carol,${PEOPLE}
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Singer
mail: carol@example.test
userPassword: {CRYPT}${carol}

dn: uid=dave,${PEOPLE}
objectClass: inetOrgPerson
objectClass: posternMailUser
uid: dave
cn: Dave
sn: Gone
mail: dave@example.test
accountStatus: disabled
userPassword: ${ssha('dave-pw')}

dn: uid=tina,${PEOPLE}
objectClass: inetOrgPerson
uid: tina
cn: Tina
sn: Secure
mail: tina@example.test
userPassword: ${ssha('tina-pw')}

dn: cn=staff,ou=groups,${SUFFIX}
objectClass: groupOfNames
objectClass: posternMailGroup
cn: staff
mail: staff@example.test
member: uid=alice,${PEOPLE}
member: uid=bob,${PEOPLE}
member: uid=dave,${PEOPLE}
`,
    );
    return s;
  }

  /** Runs ldapadd/ldapmodify as the rootdn with LDIF on stdin. */
  async ldif(tool: 'ldapadd' | 'ldapmodify', ldif: string): Promise<void> {
    const r = await run(tool, ['-x', '-H', this.url, '-D', ADMIN_DN, '-w', ADMIN_PW], { input: ldif });
    if (r.status !== 0) throw new Error(`${tool} failed (${r.status}): ${r.stderr}${r.stdout}`);
  }

  /** Sets a user's userPassword ({SSHA}). */
  async setPassword(uid: string, password: string): Promise<void> {
    await this.ldif('ldapmodify', `dn: uid=${uid},${PEOPLE}\nchangetype: modify\nreplace: userPassword\nuserPassword: ${ssha(password)}\n`);
  }

  get running(): boolean {
    return this.child !== null;
  }

  async start(): Promise<void> {
    if (this.child) return;
    // -d 0: stay in the foreground (so it is stopped with us), no debug output.
    const child = spawn(SLAPD, ['-f', path.join(this.dir, 'slapd.conf'), '-h', `${this.url}/ ${this.ldapsUrl}/`, '-d', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    this.child = child;
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`slapd exited (${code}): ${this.log.slice(-2000)}`))));
    const deadline = Date.now() + 15_000;
    for (;;) {
      const up = await Promise.race([
        new Promise<boolean>((resolve) => {
          const sock = net.connect(this.port, '127.0.0.1');
          sock.once('connect', () => (sock.destroy(), resolve(true)));
          sock.once('error', () => resolve(false));
        }),
        exited,
      ]);
      if (up) break;
      if (Date.now() > deadline) throw new Error(`slapd did not start: ${this.log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    exited.catch(() => undefined);
  }

  /** Stops slapd (SIGTERM) and waits for it to exit: connections are closed, the port refuses. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    await stopDaemon(child);
  }

  /**
   * Freezes slapd (SIGSTOP): the kernel still accepts connections, but nothing is
   * answered — a hung or overloaded server, where only Postern's timeouts help.
   */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** Thaws a paused slapd (SIGCONT): it answers what queued up meanwhile. */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async destroy(): Promise<void> {
    this.resume();
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Server config overrides for Postern on this tree: LDAP users, uid logins, the staff group, quota and the enabled flag; fast failure delays, no trusted networks (ban tests). */
export function ldapConfig(s: Slapd, secret: string, auth: 'bind' | 'compare', extra: Record<string, unknown> = {}): Partial<ConfigInput> {
  return {
    directory: {
      backend: 'ldap',
      ldap: {
        url: s.url,
        bind_dn: SERVICE_DN,
        bind_password_file: secret,
        base_dn: PEOPLE,
        auth,
        login_filter: '(&(objectClass=inetOrgPerson)(|(mail=%s)(uid=%s)))',
        group_filter: '(&(objectClass=groupOfNames)(mail=%s))',
        group_base_dn: `ou=groups,${SUFFIX}`,
        attributes: { quota: 'mailQuota', enabled: 'accountStatus' },
        // Long enough for a loaded CI machine (compare mode verifies ARGON2/CRYPT hashes), short
        // enough for the outage tests, which wait for it.
        timeout: '4s',
        connect_timeout: '4s',
        ...extra,
      },
    },
    auth: { allow_plaintext_loopback: true, failure_delay: '10ms', failure_delay_max: '10ms' },
    bans: { trusted_networks: [] },
  } as Partial<ConfigInput>;
}
