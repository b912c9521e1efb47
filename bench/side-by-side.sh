#!/usr/bin/env bash
# bench/side-by-side.sh [ROUNDS] — the SMTP receive benchmark against Postfix + Dovecot
# (../shared/peers) and Postern, one after the other, same load, same machine.
# Each round: peer with smtp-source (connection per message) and with bench/smtp.ts
# (25 messages per connection), then a fresh Postern on the same port, domain and users
# with both loads. Prints RESULT lines; BENCHMARKS.md takes the medians.
# Needs: postfix, dovecot-core dovecot-lmtpd (see ../shared/peers/README.md), sqlite3.
set -u
ROUNDS=${1:-3}
cd "$(dirname "$0")/.."
P=${PEERS:-../shared/peers}
[ -x "$P/start-peers.sh" ] || { echo "no peer scripts in $P (set PEERS=DIR)"; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed to count Postern's messages: apt-get install sqlite3"; exit 1; }
echo "== $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, node $(node -v)"
for round in $(seq 1 "$ROUNDS"); do
  "$P/start-peers.sh" >/tmp/side-peers.log 2>&1 || { echo "peers failed:"; cat /tmp/side-peers.log; exit 1; }
  echo "-- round $round: peer, smtp-source (connection per message)"
  "$P/smtp-bench.sh" 127.0.0.1:3025 peer.test "$P/count-maildir.sh /tmp/peers/mail" 2>&1 | grep -E "^RESULT"
  echo "-- round $round: peer, bench/smtp.ts (25 per connection)"
  node --import tsx bench/smtp.ts --target 127.0.0.1:3025 --domain peer.test --count-cmd "$P/count-maildir.sh /tmp/peers/mail" 2>&1 | grep -E "^RESULT"
  "$P/stop-peers.sh" >/dev/null 2>&1
  D=$(mktemp -d /tmp/postern-side.XXXXXX)
  # The inbound checks (SPF, DMARC) look up DNS for every message: a local DNS that answers at
  # once (NXDOMAIN) keeps the figures about Postern, not about this machine's resolver.
  node --import tsx -e "
    const { startDnsServer } = await import('./test/helpers/dns-server.ts');
    const d = await startDnsServer({}); (await import('node:fs')).writeFileSync('$D/dns', d.address);" &
  DNSP=$!
  for _ in $(seq 1 100); do [ -s "$D/dns" ] && break; sleep 0.1; done
  printf 'hostname = "bench.test"\ndata_dir = "%s/data"\ndomains = ["peer.test"]\n[listen]\nsmtp = "127.0.0.1:3025"\nlocal = "%s/data/postern.sock"\n[log]\nlevel = "warn"\n[dns]\nservers = ["%s"]\n%s\n' "$D" "$D" "$(cat "$D/dns")" "${BENCH_EXTRA_TOML:-}" > "$D/postern.toml"
  node --import tsx -e "
    const { openStores } = await import('./src/store/open.ts');
    const { hashPassword } = await import('./src/auth/password.ts');
    const s = await openStores('$D/data'); await s.data.addDomain('peer.test');
    const h = await hashPassword('pass'); for (let i = 1; i <= 50; i++) await s.data.addAccount('user' + i + '@peer.test', h);
    await s.close();" || exit 1
  node bin/postern.js serve --config "$D/postern.toml" > "$D/server.log" 2>&1 &
  SP=$!
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/3025) 2>/dev/null && break; sleep 0.2; done
  CNT="sqlite3 -readonly $D/data/postern.db 'select count(*) from messages'"
  echo "-- round $round: postern, smtp-source (connection per message)"
  "$P/smtp-bench.sh" 127.0.0.1:3025 peer.test "$CNT" 2>&1 | grep -E "^RESULT"
  echo "-- round $round: postern, bench/smtp.ts (25 per connection)"
  node --import tsx bench/smtp.ts --target 127.0.0.1:3025 --domain peer.test --pid "$SP" --count-cmd "$CNT" 2>&1 | grep -E "^RESULT"
  kill "$SP"; wait "$SP"
  kill "$DNSP" 2>/dev/null; wait "$DNSP" 2>/dev/null
  rm -rf "$D"
done
