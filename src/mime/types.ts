/**
 * What the ingest path learns about a message from one streaming pass over it.
 * Stored once per blob; IMAP (FETCH ENVELOPE/BODYSTRUCTURE/BODY[section]) and
 * JMAP (Email/get) answer from it without re-parsing the message.
 */

/** RFC 9051 §7.5.2 ENVELOPE address: [name, adl, mailbox, host]; null = NIL. */
export interface EnvelopeAddress {
  name: string | null;
  adl: string | null;
  mailbox: string | null;
  host: string | null;
}

/** RFC 9051 §7.5.2 ENVELOPE, values as they should be sent (raw header text, not decoded), null = NIL. */
export interface Envelope {
  date: string | null;
  subject: string | null;
  from: EnvelopeAddress[] | null;
  sender: EnvelopeAddress[] | null;
  replyTo: EnvelopeAddress[] | null;
  to: EnvelopeAddress[] | null;
  cc: EnvelopeAddress[] | null;
  bcc: EnvelopeAddress[] | null;
  inReplyTo: string | null;
  messageId: string | null;
}

/**
 * One MIME part. Offsets are byte offsets into the stored blob.
 * headerStart..bodyStart is the part's header block (including the blank line),
 * bodyStart..bodyEnd is the part's body.
 */
export interface MimePart {
  /** IMAP section path: "" for the root, "1", "1.2", ... (RFC 9051 §6.4.5) */
  path: string;
  type: string;       // lower-case, e.g. "text"
  subtype: string;    // lower-case, e.g. "plain"
  params: Record<string, string>;  // Content-Type parameters, keys lower-case, values decoded (RFC 2231)
  id: string | null;
  description: string | null;
  encoding: string;   // Content-Transfer-Encoding, upper-case as sent, default "7BIT"
  md5: string | null;
  disposition: { type: string; params: Record<string, string> } | null;
  language: string[] | null;
  location: string | null;
  headerStart: number;
  bodyStart: number;
  bodyEnd: number;
  /** body size in octets (bodyEnd - bodyStart) */
  size: number;
  /** number of lines in the body (for text/* and message/rfc822 BODYSTRUCTURE) */
  lines: number;
  /** sub-parts of multipart/*, or the single embedded message's root for message/rfc822 */
  children: MimePart[];
  /** for message/rfc822 parts: the embedded message's envelope */
  envelope: Envelope | null;
}

export interface MessageIndex {
  /** total size in octets */
  size: number;
  envelope: Envelope;
  root: MimePart;
  /** decoded Subject (RFC 2047) for listings */
  subject: string;
  /** first From address as "Name <addr>" or "addr", decoded */
  from: string;
  /** parsed Date header (ms since epoch) or null */
  date: number | null;
  messageId: string | null;
  /** number of Received: headers in the top-level header block (loop detection) */
  receivedCount: number;
  /** Decoded plain text of text/* parts and relevant headers for full-text search, capped. */
  searchText: string;
  /** true when a limit (nesting depth, part count) stopped structure parsing; offsets of the rest fold into the last part */
  truncated: boolean;
}
