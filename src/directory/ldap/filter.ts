/**
 * LDAP search filters from administrator templates and client-chosen names.
 *
 * Every value put into a filter is escaped as RFC 4515 §3 requires ("*", "(", ")",
 * "\" and NUL as \2a \28 \29 \5c \00), so an address such as `*)(uid=*` is searched
 * for literally and never widens the filter (LDAP injection).
 */

/** RFC 4515 §3 valueencoding: the five special octets as "\" and two hex digits; UTF-8 passes through. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * A template with placeholders, Dovecot-style: %s the whole value, %u its local part
 * (before the last "@"), %d its domain (after it; empty without one), %% a "%".
 * Each is escaped.
 */
export function expandFilter(template: string, value: string): string {
  const at = value.lastIndexOf('@');
  const local = at < 0 ? value : value.slice(0, at);
  const domain = at < 0 ? '' : value.slice(at + 1);
  return template.replace(/%([sud%])/g, (_, p: string) => (p === '%' ? '%' : escapeFilterValue(p === 's' ? value : p === 'u' ? local : domain)));
}

/** The template as a "match every entry" filter: each placeholder becomes "*" (presence or substring), for listing users. */
export function wildcardFilter(template: string): string {
  return template.replace(/%([sud%])/g, (_, p: string) => (p === '%' ? '%' : '*')).replace(/\*@\*/g, '*');
}

/**
 * Names we never send to the LDAP server: control characters (log forging, NUL) and
 * absurd lengths. They are "no such user", not an error.
 */
export function isSearchableName(name: string): boolean {
  return name.length > 0 && name.length <= 320 && !/[\x00-\x1f\x7f]/.test(name);
}
