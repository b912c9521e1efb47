import fs from 'node:fs';
import path from 'node:path';

/**
 * Messages in files, for `postern spam train`: a Maildir (its cur/ and new/), a directory of
 * message files (.eml or any name; subdirectories too), a single message file, or an mbox file
 * (one starting with a "From " line). Yields one message at a time: an mbox of any size is
 * read in pieces, never whole.
 */
export interface MessageFile {
  /** Where it came from: a path, or "path#n" for the n-th message of an mbox. */
  source: string;
  data: Buffer;
}

export async function* messageFiles(target: string): AsyncGenerator<MessageFile> {
  const st = fs.statSync(target);
  if (st.isDirectory()) {
    const maildir = ['cur', 'new'].map((d) => path.join(target, d)).filter((d) => fs.existsSync(d) && fs.statSync(d).isDirectory());
    for (const dir of maildir.length ? maildir : [target]) yield* directory(dir, maildir.length === 0);
    return;
  }
  if (isMbox(target)) yield* mbox(target);
  else yield { source: target, data: fs.readFileSync(target) };
}

async function* directory(dir: string, recurse: boolean): AsyncGenerator<MessageFile> {
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue; // Maildir++ subfolders (.Junk) and dot files are not this folder's mail
    const p = path.join(dir, e.name);
    if (e.isFile()) yield { source: p, data: fs.readFileSync(p) };
    else if (e.isDirectory() && recurse) yield* messageFiles(p);
  }
}

function isMbox(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(5);
    return fs.readSync(fd, head, 0, 5, 0) === 5 && head.toString('latin1') === 'From ';
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * mbox (RFC 4155): a message starts at each "From " line at the start of the file or after an
 * empty line; ">From " lines are unescaped (mboxrd: one ">" less). Lines get CRLF ends again.
 */
async function* mbox(file: string): AsyncGenerator<MessageFile> {
  let lines: Buffer[] = [];
  let pending = Buffer.alloc(0);
  let n = 0;
  let prevEmpty = true;
  const flush = (): MessageFile | null => {
    while (lines.length && lines[lines.length - 1]!.length === 0) lines.pop(); // the separating empty line
    const msg = lines.length ? { source: `${file}#${++n}`, data: Buffer.concat(lines.flatMap((l) => [l, CRLF])) } : null;
    lines = [];
    return msg;
  };
  const line = (raw: Buffer): MessageFile | null => {
    const l = raw.length && raw[raw.length - 1] === 0x0d ? raw.subarray(0, raw.length - 1) : raw;
    let out: MessageFile | null = null;
    if (prevEmpty && l.subarray(0, 5).toString('latin1') === 'From ') out = flush();
    else lines.push(/^>+From /.test(l.subarray(0, 64).toString('latin1')) ? l.subarray(1) : l);
    prevEmpty = l.length === 0;
    return out;
  };
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 256 * 1024 })) {
    let buf = Buffer.concat([pending, chunk as Buffer]);
    for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a)) {
      const m = line(buf.subarray(0, i));
      buf = buf.subarray(i + 1);
      if (m) yield m;
    }
    pending = Buffer.from(buf);
  }
  if (pending.length) {
    const m = line(pending);
    if (m) yield m;
  }
  const last = flush();
  if (last) yield last;
}

const CRLF = Buffer.from('\r\n');
