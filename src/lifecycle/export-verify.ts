import { createHash, Hash } from 'node:crypto';
import type { ExportFormat, ExportHeader, ExportManifest, TableDigest } from './export-format.js';
import { rowPrefix, ROW_SUFFIX } from './export-format.js';

export interface VerifiedTable {
  name: string;
  /** Counted and hashed from the file. */
  rows: number;
  sha256: string;
  /** What the manifest says, if it names the table. */
  expected?: TableDigest;
  ok: boolean;
}

export interface VerifyResult {
  format: ExportFormat | null;
  header: ExportHeader | null;
  manifest: ExportManifest | null;
  tables: VerifiedTable[];
  /** Empty when the file is a complete export that matches its manifest. */
  problems: string[];
}

const NEWLINE = 0x0a;
const ROW_LINE = /^\{"table":"([a-z_][a-z0-9_]{0,62})","row":\{/;
const JSON_TABLE_OPEN = /^"([a-z_][a-z0-9_]{0,62})":\[$/;
const MAX_PROBLEMS = 20;
/** Enough of a line to tell what it is: the longest row prefix is {"table":"<63 characters>","row":{ (82 bytes). */
const HEAD_BYTES = 96;

interface Tally {
  hash: Hash;
  rows: number;
}

/** Parses the file line by line (bytes, never a whole table in memory) and checks every table against the manifest. */
class Verifier {
  format: ExportFormat | null = null;
  header: ExportHeader | null = null;
  manifest: ExportManifest | null = null;
  readonly problems: string[] = [];
  private readonly seen = new Map<string, Tally>();
  private lineNo = 0;
  /** The manifest was read (valid or not): it must be the last line. */
  private manifestSeen = false;
  /** Not an export (bad header): the rest is not looked at. */
  private stopped = false;
  // json format only
  private jsonTable: string | null = null;
  private jsonStage: 'tables' | 'rows' | 'manifest' = 'tables';
  private lastRowHadComma = false;
  private rowsInJsonTable = 0;

  line(bytes: Buffer, terminated: boolean): void {
    this.lineNo++;
    if (this.stopped) return;
    if (this.manifestSeen) {
      this.problem(`line ${this.lineNo}: nothing may follow the manifest`);
      return;
    }
    if (!terminated) {
      this.problem(`line ${this.lineNo}: the file ends in the middle of a line (truncated)`);
      return;
    }
    if (this.lineNo === 1) return this.first(bytes);
    if (this.format === 'ndjson') this.ndjson(bytes);
    else this.json(bytes);
  }

  private first(bytes: Buffer): void {
    const text = bytes.toString('utf8');
    try {
      if (text.startsWith('{"header":') && text.endsWith(',')) {
        this.format = 'json';
        this.header = JSON.parse(text.slice('{"header":'.length, -1)) as ExportHeader;
      } else {
        this.format = 'ndjson';
        this.header = JSON.parse(text) as ExportHeader;
      }
    } catch {
      this.header = null;
    }
    if (this.header?.type !== 'header' || this.header.format !== 'tenant-export') {
      this.problem('line 1 is not the header of a tenant export');
      this.stopped = true;
    } else if (this.header.version !== 1) {
      this.problem(`export format version ${String(this.header.version)} is not supported (only 1)`);
      this.stopped = true;
    }
  }

  private ndjson(bytes: Buffer): void {
    const start = bytes.toString('latin1', 0, HEAD_BYTES);
    const row = ROW_LINE.exec(start);
    if (row) {
      const t = this.tally(row[1]);
      t.hash.update(bytes);
      t.hash.update('\n');
      t.rows++;
    } else if (start.startsWith('{"type":"manifest"')) {
      this.readManifest(bytes.toString('utf8'));
    } else {
      this.problem(`line ${this.lineNo} is neither a row, the header nor the manifest`);
    }
  }

  private json(bytes: Buffer): void {
    const head = bytes.toString('latin1', 0, HEAD_BYTES);
    switch (this.jsonStage) {
      case 'tables':
        if (this.lineNo === 2) {
          if (head !== '"tables":{') this.problem('line 2 must open "tables"');
          return;
        }
        if (head === '},') {
          this.jsonStage = 'manifest';
          return;
        }
        return this.openJsonTable(head);
      case 'rows':
        if (head === ']' || head === '],') {
          if (this.lastRowHadComma) this.problem(`line ${this.lineNo - 1}: the last row of '${this.jsonTable}' must not end with a comma`);
          this.jsonStage = 'tables';
          this.jsonTable = null;
          return;
        }
        return this.jsonRow(bytes);
      case 'manifest':
        if (!head.startsWith('"manifest":')) return this.problem(`line ${this.lineNo} must be the manifest`);
        return this.readManifest(bytes.toString('utf8', '"manifest":'.length, bytes.length - 1));
    }
  }

  private openJsonTable(head: string): void {
    const open = JSON_TABLE_OPEN.exec(head);
    if (!open) return this.problem(`line ${this.lineNo} is neither a table, nor the end of the tables`);
    this.jsonTable = open[1];
    this.tally(open[1]);
    this.jsonStage = 'rows';
    this.rowsInJsonTable = 0;
    this.lastRowHadComma = false;
  }

  private jsonRow(bytes: Buffer): void {
    if (this.rowsInJsonTable > 0 && !this.lastRowHadComma) this.problem(`line ${this.lineNo - 1}: rows must be separated by commas`);
    const comma = bytes.length > 0 && bytes[bytes.length - 1] === 0x2c;
    const t = this.tally(this.jsonTable!);
    t.hash.update(rowPrefix(this.jsonTable!));
    t.hash.update(comma ? bytes.subarray(0, bytes.length - 1) : bytes);
    t.hash.update(ROW_SUFFIX);
    t.rows++;
    this.rowsInJsonTable++;
    this.lastRowHadComma = comma;
  }

  private readManifest(text: string): void {
    this.manifestSeen = true;
    try {
      const m = JSON.parse(text) as ExportManifest;
      if (m.type !== 'manifest' || typeof m.tables !== 'object' || m.tables === null) throw new Error('not a manifest');
      this.manifest = m;
    } catch {
      this.problem(`line ${this.lineNo}: the manifest is not valid`);
    }
  }

  private tally(name: string): Tally {
    let t = this.seen.get(name);
    if (!t) {
      t = { hash: createHash('sha256'), rows: 0 };
      this.seen.set(name, t);
    }
    return t;
  }

  problem(message: string): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push(message);
  }

  result(): VerifyResult {
    if (this.lineNo === 0) this.problem('the file is empty');
    if (this.stopped) return { format: null, header: null, manifest: null, tables: [], problems: this.problems };
    if (!this.manifestSeen) this.problem('the file has no manifest: the export is truncated');
    const expected = this.manifest?.tables ?? {};
    const names = [...new Set([...(this.header?.tables ?? []).map((t) => t.name), ...Object.keys(expected), ...this.seen.keys()])];
    const tables: VerifiedTable[] = names.map((name) => {
      const t = this.seen.get(name);
      const rows = t?.rows ?? 0;
      const sha256 = (t?.hash ?? createHash('sha256')).digest('hex');
      const want = expected[name];
      const ok = want !== undefined && want.rows === rows && want.sha256 === sha256;
      if (this.manifest && !ok) {
        this.problem(
          want
            ? `table '${name}': the file has ${rows} rows (sha256 ${sha256}) but the manifest says ${want.rows} rows (sha256 ${want.sha256})`
            : `table '${name}': ${rows} rows in the file, but the manifest does not list the table`,
        );
      }
      return { name, rows, sha256, expected: want, ok };
    });
    return { format: this.format, header: this.header, manifest: this.manifest, tables, problems: this.problems };
  }
}

/**
 * Recomputes every table's row count and SHA-256 from an export file (either format) and checks
 * them against its manifest. Reads the input once, line by line.
 */
export async function verifyExport(input: AsyncIterable<Buffer | string>): Promise<VerifyResult> {
  const v = new Verifier();
  let carry: Buffer = Buffer.alloc(0);
  for await (const piece of input) {
    const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      const line = carry.length ? Buffer.concat([carry, chunk.subarray(start, nl)]) : chunk.subarray(start, nl);
      carry = Buffer.alloc(0);
      v.line(line, true);
      start = nl + 1;
    }
    if (start < chunk.length) carry = Buffer.concat([carry, chunk.subarray(start)]);
  }
  if (carry.length) v.line(carry, false);
  return v.result();
}
