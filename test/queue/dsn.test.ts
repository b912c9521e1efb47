import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { buildDsn } from '../../src/queue/dsn.ts';

const original = Buffer.from('From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@example.test>\r\n\r\nthe body\r\n');
const base = {
  hostname: 'mx.example.test',
  queueId: 'Q1234567890',
  to: 'alice@example.test',
  arrival: new Date('2026-11-28T10:00:00Z'),
  now: new Date('2026-11-28T10:05:00Z'),
  original,
};

test('a failure DSN is a multipart/report with a readable part, RFC 3464 fields and the original headers', async () => {
  const dsn = buildDsn({
    ...base,
    ret: 'HDRS',
    envid: 'ENV-1',
    recipients: [
      { recipient: 'bob@remote.test', originalRecipient: 'rfc822;bob@remote.test', action: 'failed', status: '5.1.1', remoteMta: 'mx.remote.test', diagnostic: '550 5.1.1 <bob@remote.test>: user unknown', lastAttempt: base.now },
    ],
  });
  const text = dsn.toString();
  assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status; boundary="[^"]+"\r$/m);
  assert.match(text, /^Auto-Submitted: auto-replied\r$/m);
  assert.match(text, /^Subject: Undelivered Mail Returned to Sender\r$/m);
  const parsed = await simpleParser(dsn);
  assert.match(parsed.text ?? '', /could not be delivered[\s\S]*<bob@remote\.test>: 550 5\.1\.1/);
  // The message/delivery-status part, as a block between its MIME header and the next boundary.
  const boundary = /boundary="([^"]+)"/.exec(text)![1]!;
  const part = text.split(`--${boundary}`).find((p) => p.startsWith('\r\nContent-Type: message/delivery-status\r\n'));
  assert.ok(part, 'message/delivery-status part');
  const fields = part;
  for (const f of ['Reporting-MTA: dns; mx.example.test', 'Original-Envelope-Id: ENV-1', 'Final-Recipient: rfc822; bob@remote.test', 'Original-Recipient: rfc822;bob@remote.test', 'Action: failed', 'Status: 5.1.1', 'Remote-MTA: dns; mx.remote.test', 'Diagnostic-Code: smtp; 550 5.1.1']) {
    assert.ok(fields.includes(f), `${f} in ${fields}`);
  }
  const headers = parsed.attachments.find((a) => a.contentType === 'text/rfc822-headers');
  assert.ok(headers, 'RET=HDRS returns the header only');
  assert.match(headers.content.toString(), /Subject: hello/);
  assert.doesNotMatch(text, /the body/);
});

test('RET=FULL returns the whole message (up to the size limit); delayed DSNs say until when', async () => {
  const full = await simpleParser(buildDsn({ ...base, ret: 'FULL', recipients: [{ recipient: 'bob@remote.test', action: 'delayed', status: '4.4.1', willRetryUntil: new Date('2026-12-03T10:00:00Z') }] }));
  assert.equal(full.subject, 'Delayed Mail (still being retried)');
  assert.match(full.text ?? '', /tried until Thu, 3 Dec 2026/);
  const rfc822 = full.attachments.find((a) => a.contentType === 'message/rfc822');
  assert.ok(rfc822 && rfc822.content.toString().includes('the body'));
  const capped = buildDsn({ ...base, ret: 'FULL', fullLimit: 10, recipients: [{ recipient: 'bob@remote.test', action: 'failed', status: '5.0.0' }] }).toString();
  assert.match(capped, /Content-Type: text\/rfc822-headers/);
  assert.doesNotMatch(capped, /the body/);
});

test('foreign text cannot inject header lines or fields', () => {
  const dsn = buildDsn({ ...base, ret: 'HDRS', recipients: [{ recipient: 'x@remote.test\r\nBcc: victim@x', action: 'failed', status: '5.0.0', diagnostic: '550 no\r\nAction: delivered' }] }).toString();
  assert.doesNotMatch(dsn, /^Bcc:/m);
  assert.equal(dsn.match(/^Action: /gm)?.length, 1);
});
