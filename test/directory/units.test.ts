import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FilterParser } from 'ldapts';
import { escapeFilterValue, expandFilter, wildcardFilter } from '../../src/directory/ldap/filter.ts';
import { parseQuota, looksLikeDn } from '../../src/directory/ldap/entry.ts';
import { defaultAliasFilter } from '../../src/directory/ldap/directory.ts';
import { parseConfig, ConfigError } from '../../src/config/load.ts';
import { parseStoredHash } from '../../src/auth/hash-schemes.ts';

test('RFC 4515 escaping: the five special characters, nothing else', () => {
  assert.equal(escapeFilterValue('*)(uid=*'), '\\2a\\29\\28uid=\\2a');
  assert.equal(escapeFilterValue('a\\b\0c'), 'a\\5cb\\00c');
  assert.equal(escapeFilterValue('jörg+tag@example.org'), 'jörg+tag@example.org');
  // The injection stays one equality test on one literal value.
  const f = FilterParser.parseString(expandFilter('(&(objectClass=inetOrgPerson)(mail=%s))', '*)(uid=*'));
  assert.equal(f.toString(), '(&(objectClass=inetOrgPerson)(mail=\\2a\\29\\28uid=\\2a))');
});

test('filter templates: %s, %u, %d, %%; wildcard form for listing', () => {
  assert.equal(expandFilter('(|(mail=%s)(&(uid=%u)(dc=%d))(x=100%%))', 'Al*ce@Ex.org'), '(|(mail=Al\\2ace@Ex.org)(&(uid=Al\\2ace)(dc=Ex.org))(x=100%))');
  assert.equal(wildcardFilter('(&(objectClass=inetOrgPerson)(mail=%s))'), '(&(objectClass=inetOrgPerson)(mail=*))');
  assert.equal(wildcardFilter('(mail=%u@%d)'), '(mail=*)');
  assert.equal(defaultAliasFilter('(&(objectClass=inetOrgPerson)(mail=%s))', 'mail', 'mailAlternateAddress'), '(&(objectClass=inetOrgPerson)(mailAlternateAddress=%s))');
  assert.equal(defaultAliasFilter('(uid=%u)', 'mail', 'mailLocalAddress'), '(mailLocalAddress=%s)');
});

test('quota values: bytes, units, Dovecot rules; 0 and garbage mean none', () => {
  assert.equal(parseQuota('1048576'), 1048576);
  assert.equal(parseQuota('1G'), 1024 ** 3);
  assert.equal(parseQuota('512M'), 512 * 1024 ** 2);
  assert.equal(parseQuota('*:storage=1024'), 1024 * 1024);
  assert.equal(parseQuota('*:storage=2G'), 2 * 1024 ** 3);
  assert.equal(parseQuota('*:bytes=1000'), 1000);
  assert.equal(parseQuota('0'), null);
  assert.equal(parseQuota('lots'), null);
  assert.equal(parseQuota(null), null);
  assert.ok(looksLikeDn('uid=alice,ou=people,dc=example,dc=test'));
  assert.ok(!looksLikeDn('alice@example.test'));
  assert.ok(!looksLikeDn('alice'));
});

test('OpenLDAP {ARGON2} and {CRYPT} userPassword values are recognised', () => {
  assert.equal(parseStoredHash('{ARGON2}$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA').kind, 'argon2');
  assert.equal(parseStoredHash('{ARGON2}$6$salt$x').kind, 'unsupported');
});

test('[directory] config: defaults, and errors that name the key', () => {
  const c = parseConfig({}, 'test');
  assert.equal(c.directory.backend, 'internal');
  const ok = parseConfig({ directory: { backend: 'ldap', ldap: { url: 'ldaps://ldap.example.org', base_dn: 'dc=example,dc=org' } } }, 'test');
  assert.equal(ok.directory.ldap?.cache_ttl, 60_000);
  assert.equal(ok.directory.ldap?.negative_cache_ttl, 60_000);
  assert.equal(ok.directory.ldap?.auth, 'bind');
  assert.equal(ok.directory.ldap?.attributes.alias, 'mailAlternateAddress');
  const bad = (directory: unknown) => {
    try {
      parseConfig({ directory }, 'test.toml');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    assert.fail('accepted');
  };
  assert.match(bad({ backend: 'ldap' }), /directory\.ldap: backend = "ldap" needs a \[directory\.ldap\] section/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'http://x', base_dn: 'dc=x' } }), /directory\.ldap\.url: expected "ldap:\/\/host\[:port\]"/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'ldap://x', base_dn: 'dc=x', user_filter: '(mail=alice)' } }), /directory\.ldap\.user_filter: expected a filter with %s/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'ldap://x', base_dn: 'dc=x', user_filter: '(&(mail=%s)' } }), /directory\.ldap\.user_filter: not a valid LDAP search filter/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'ldap://x', base_dn: 'dc=x', bind_dn: 'cn=x' } }), /directory\.ldap\.bind_password_file: bind_dn and bind_password_file must be given together/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'ldaps://x', starttls: true, base_dn: 'dc=x' } }), /directory\.ldap\.starttls: starttls is for ldap:\/\/ URLs/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'ldap://x', base_dn: 'dc=x', auth: 'sasl' } }), /directory\.ldap\.auth/);
  assert.match(bad({ backend: 'ldap', ldap: { url: 'ldap://x', base_dn: 'dc=x', attributes: { alias: 'bad attr' } } }), /directory\.ldap\.attributes\.alias: expected an LDAP attribute name/);
  assert.match(bad({ backend: 'ldapx' }), /directory\.backend/);
});
