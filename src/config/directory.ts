import { z } from 'zod';
import { FilterParser } from 'ldapts';
import type { duration as Duration } from './schema.ts';
import { expandFilter } from '../directory/ldap/filter.ts';

/**
 * `[directory]` and `[directory.ldap]`: where users, their aliases and groups come
 * from. "internal" (the default) is the store (`postern user add`); "ldap" reads them
 * from an LDAP server like Dovecot's and Postfix's LDAP lookups (docs/ldap.md).
 * Defaults are in output units (milliseconds).
 */

/** An attribute description (RFC 4512 §2.5): a name or an OID; "" turns the mapping off. */
const attributeName = z.string().regex(/^(|[A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$/, 'expected an LDAP attribute name such as "mailAlternateAddress", or "" for none');

/** A search filter with placeholders: it must be a valid RFC 4515 filter once %s/%u/%d are filled in. */
function filterTemplate(placeholders: 'address' | 'any') {
  return z.string().superRefine((v, ctx) => {
    if (!/%[sud]/.test(v)) {
      ctx.addIssue({ code: 'custom', message: `expected a filter with %s (the ${placeholders === 'address' ? 'address' : 'login name'}), %u (its local part) or %d (its domain), e.g. "(&(objectClass=inetOrgPerson)(mail=%s))"` });
      return;
    }
    if (!balanced(v)) {
      ctx.addIssue({ code: 'custom', message: 'not a valid LDAP search filter (RFC 4515): it must be one parenthesised filter with balanced parentheses, e.g. "(&(objectClass=inetOrgPerson)(mail=%s))"' });
      return;
    }
    try {
      FilterParser.parseString(expandFilter(v, 'probe@example.org'));
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a valid LDAP search filter (RFC 4515): ${(err as Error).message}` });
    }
  });
}

/** One parenthesised filter: "(" … ")" with every parenthesis closed (values put in are escaped, so all are structural). */
function balanced(f: string): boolean {
  const t = f.trim();
  if (!t.startsWith('(') || !t.endsWith(')')) return false;
  let depth = 0;
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '\\') i++;
    else if (t[i] === '(') depth++;
    else if (t[i] === ')' && --depth === 0 && i !== t.length - 1) return false;
    if (depth < 0) return false;
  }
  return depth === 0;
}

const ATTRIBUTE_DEFAULTS = {
  mail: 'mail',
  alias: 'mailAlternateAddress',
  uid: 'uid',
  display_name: 'displayName',
  quota: '',
  enabled: '',
  password: 'userPassword',
};

/**
 * Built by schema.ts with its duration type (a function, not a module-level import of
 * schema.ts, which imports this file: no import cycle).
 */
export function directorySchema(duration: typeof Duration) {
  const ldapSchema = z
    .object({
      /** ldap://host[:port] or ldaps://host[:port] (implicit TLS); no path, no query. */
      url: z.string().regex(/^ldaps?:\/\/(\[[0-9A-Fa-f:.]+\]|[^\s/:[\]]+)(:\d{1,5})?\/?$/i, 'expected "ldap://host[:port]" or "ldaps://host[:port]"'),
      /** Upgrade an ldap:// connection with StartTLS (RFC 4513 §3) before binding. */
      starttls: z.boolean().default(false),
      /** CA certificate(s) (PEM) that sign the LDAP server's certificate; default: the system's. */
      tls_ca_file: z.string().min(1).optional(),
      /** Verify the LDAP server's certificate and name (turn off only for testing). */
      tls_verify: z.boolean().default(true),
      /** The DN Postern binds as for its searches; absent: anonymous searches. */
      bind_dn: z.string().min(1).optional(),
      /** File holding bind_dn's password (first line). */
      bind_password_file: z.string().min(1).optional(),
      /** Where users are searched. */
      base_dn: z.string().min(1),
      scope: z.enum(['sub', 'one', 'base']).default('sub'),
      /** Finds a user by their primary address (%s); "(mail=*)" for the list (`postern user list`). */
      user_filter: filterTemplate('address').default('(&(objectClass=inetOrgPerson)(mail=%s))'),
      /** Finds a user by an alternate address (%s); default: user_filter's object class with attributes.alias. */
      alias_filter: filterTemplate('address').optional(),
      /** Finds a user by login name (%s: what the client typed); default: user_filter (login by full address). */
      login_filter: filterTemplate('any').optional(),
      /** "bind": check passwords by binding as the user; "compare": read attributes.password and verify its hash here. */
      auth: z.enum(['bind', 'compare']).default('bind'),
      /** Distribution lists: a group whose address is %s; mail to it goes to its members. Absent: no groups. */
      group_filter: filterTemplate('address').optional(),
      /** Where groups are searched; default base_dn. */
      group_base_dn: z.string().min(1).optional(),
      /** The group attribute naming members: DNs (member, uniqueMember), addresses, or uids (memberUid). */
      group_member_attribute: attributeName.default('member'),
      attributes: z
        .object({
          /** The primary address: the account's name in Postern. */
          mail: attributeName.refine((v) => v !== '', 'attributes.mail cannot be empty').default('mail'),
          /** Alternate addresses delivered to the same user; "" for none. */
          alias: attributeName.default('mailAlternateAddress'),
          /** Login name other than the address (used by login_filter and memberUid groups). */
          uid: attributeName.default('uid'),
          display_name: attributeName.default('displayName'),
          /** Storage limit: bytes, "2G"-style sizes, Dovecot's "*:storage=N" (KiB) / "*:bytes=N"; 0 or absent: none. */
          quota: attributeName.default(''),
          /** An attribute saying whether the account may log in and receive mail (see enabled_values); "" for none. */
          enabled: attributeName.default(''),
          /** The password hash read by auth = "compare" ({SSHA}, {CRYPT}, {ARGON2}, …). */
          password: attributeName.default('userPassword'),
        })
        .strict()
        .default({ ...ATTRIBUTE_DEFAULTS }),
      /** Values of attributes.enabled meaning "enabled" (case-insensitive); any other value disables; absent attribute: enabled. */
      enabled_values: z.array(z.string().min(1)).min(1).default(['TRUE', 'active', 'enabled', 'yes', '1']),
      /** How long a found user, alias or group is remembered (Dovecot auth_cache_ttl); 0: no cache. */
      cache_ttl: duration.default(60_000),
      /** How long "no such user" is remembered (Dovecot auth_cache_negative_ttl); 0: not cached. */
      negative_cache_ttl: duration.default(60_000),
      /** Cached lookups kept at most. */
      cache_size: z.number().int().positive().default(10_000),
      /** A search or bind that takes longer is a temporary failure. */
      timeout: duration.default(5_000),
      connect_timeout: duration.default(5_000),
      /** Connections per process for searches (and as many for password binds). */
      pool_size: z.number().int().min(1).max(64).default(4),
      /** A failing LDAP server is logged once per this period, not once per query. */
      failure_log_interval: duration.default(60_000),
    })
    .strict()
    .superRefine((v, ctx) => {
      if (!!v.bind_dn !== !!v.bind_password_file) {
        ctx.addIssue({ code: 'custom', path: [v.bind_dn ? 'bind_password_file' : 'bind_dn'], message: 'bind_dn and bind_password_file must be given together' });
      }
      if (v.starttls && /^ldaps:/i.test(v.url)) ctx.addIssue({ code: 'custom', path: ['starttls'], message: 'starttls is for ldap:// URLs; ldaps:// is TLS already' });
    });

  return z
    .object({
      /** "internal": users, aliases and passwords in Postern's store. "ldap": from [directory.ldap]. */
      backend: z.enum(['internal', 'ldap']).default('internal'),
      ldap: ldapSchema.optional(),
    })
    .strict()
    .superRefine((v, ctx) => {
      if (v.backend === 'ldap' && !v.ldap) ctx.addIssue({ code: 'custom', path: ['ldap'], message: 'backend = "ldap" needs a [directory.ldap] section with at least url and base_dn (docs/ldap.md)' });
    })
    .default({ backend: 'internal' });
}

export type DirectoryConfig = z.output<ReturnType<typeof directorySchema>>;
export type LdapConfig = NonNullable<DirectoryConfig['ldap']>;
