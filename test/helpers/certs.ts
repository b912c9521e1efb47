import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { generate } from 'selfsigned';

/** A self-signed certificate for `names` (first = CN, all in subjectAltName: IP addresses as iPAddress), written as DIR/BASE.crt and DIR/BASE.key. */
export async function makeCert(dir: string, base: string, names: string[]): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: names[0]! }], {
    keyType: 'ec',
    curve: 'P-256',
    extensions: [{ name: 'subjectAltName', altNames: names.map((value) => (net.isIP(value) ? { type: 7, ip: value } : { type: 2, value })) }],
  } as Parameters<typeof generate>[1]);
  const files = { cert: path.join(dir, `${base}.crt`), key: path.join(dir, `${base}.key`) };
  fs.writeFileSync(files.cert, pems.cert);
  fs.writeFileSync(files.key, pems.private);
  return files;
}
