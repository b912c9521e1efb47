// Worker thread for the pure-JS crypt(3) verifications: unixcrypt (SHA-crypt
// $5$/$6$) and bcryptjs ($2y$) are synchronous and take tens of milliseconds
// per hash, which must not stall the main event loop (every session of every
// protocol runs there). Plain .mjs on purpose: it needs no TypeScript, so no
// tsx registration (compare src/store/sqlite/writer-worker-boot.mjs).
// Protocol: { id, kind: 'sha-crypt' | 'bcrypt', hash, password } → { id, ok }.
import { parentPort } from 'node:worker_threads';
import { verify as shaCryptVerify } from 'unixcrypt';
import bcrypt from 'bcryptjs';

parentPort.on('message', ({ id, kind, hash, password }) => {
  let ok = false;
  try {
    if (kind === 'sha-crypt') ok = shaCryptVerify(password, hash);
    else if (kind === 'bcrypt') ok = bcrypt.compareSync(password, hash);
  } catch {
    // Malformed input (unixcrypt throws on salts and lengths it dislikes): a failed login.
    ok = false;
  }
  parentPort.postMessage({ id, ok: ok === true });
});
