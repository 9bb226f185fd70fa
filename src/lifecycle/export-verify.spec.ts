import { describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { JSON_LAYOUT, rowPrefix, type ExportHeader, type ExportManifest } from './export-format.js';
import { verifyExport } from './export-verify.js';

const ROWS: Record<string, string[]> = {
  projects: ['{"id":"a","name":"x, \\"y\\""}', '{"id":"b","name":"é\\n"}'],
  tasks: [],
  notes: ['{"id":"c"}'],
};

const header: ExportHeader = {
  type: 'header',
  format: 'tenant-export',
  version: 1,
  tenant: { id: '00000000-0000-0000-0000-000000000001', slug: 'acme', name: 'Acme', tier: 'shared', status: 'active' },
  exportedAt: '2026-01-01T00:00:00.000Z',
  migration: '0002_write_gate.sql',
  tables: Object.keys(ROWS).map((name) => ({ name, key: 'id', columns: ['id'] })),
};

function manifest(): ExportManifest {
  const tables: ExportManifest['tables'] = {};
  for (const [name, rows] of Object.entries(ROWS)) {
    const h = createHash('sha256');
    for (const r of rows) h.update(`${rowPrefix(name)}${r}}\n`);
    tables[name] = { rows: rows.length, sha256: h.digest('hex') };
  }
  return { type: 'manifest', tables };
}

function ndjson(): string {
  const rows = Object.entries(ROWS).flatMap(([name, rs]) => rs.map((r) => `${rowPrefix(name)}${r}}\n`));
  return `${JSON.stringify(header)}\n${rows.join('')}${JSON.stringify(manifest())}\n`;
}

function json(): string {
  let out = JSON_LAYOUT.open(header);
  Object.entries(ROWS).forEach(([name, rs], i) => {
    out += JSON_LAYOUT.tableOpen(name, i === 0);
    rs.forEach((r, j) => (out += (j === 0 ? JSON_LAYOUT.firstRow : JSON_LAYOUT.nextRow) + r));
    out += JSON_LAYOUT.tableClose;
  });
  return out + JSON_LAYOUT.close(manifest());
}

/** The file in chunks of n bytes: lines and multi-byte characters split across chunks. */
async function* chunks(text: string, n = 7): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += n) yield bytes.subarray(i, i + n);
}

describe('verifyExport', () => {
  it.each([
    ['ndjson', ndjson],
    ['json', json],
  ])('accepts a complete %s export, whatever the chunking', async (format, make) => {
    expect(JSON.parse(json())).toMatchObject({ header, manifest: manifest() });
    for (const n of [1, 7, 1 << 16]) {
      const r = await verifyExport(chunks(make(), n));
      expect(r.problems).toEqual([]);
      expect(r.format).toBe(format);
      expect(r.tables.map((t) => [t.name, t.rows, t.ok])).toEqual([
        ['projects', 2, true],
        ['tasks', 0, true],
        ['notes', 1, true],
      ]);
    }
  });

  it('names the table whose rows changed, were removed or were added', async () => {
    const changed = await verifyExport(chunks(ndjson().replace('"id":"c"', '"id":"C"')));
    expect(changed.problems).toEqual([expect.stringMatching(/^table 'notes': the file has 1 rows .* but the manifest says 1 rows/)]);
    const removed = await verifyExport(chunks(json().replace(',\n{"id":"b"', '\n{"id":"b"').replace(/\n\{"id":"b"[^\n]*/, '')));
    expect(removed.problems.some((p) => p.startsWith("table 'projects': the file has 1 rows"))).toBe(true);
    const added = await verifyExport(chunks(ndjson().replace('{"type":"manifest"', `${rowPrefix('tasks')}{"id":"d"}}\n{"type":"manifest"`)));
    expect(added.problems).toEqual([expect.stringMatching(/^table 'tasks': the file has 1 rows/)]);
  });

  it('finds a missing manifest, a cut line, lines after the manifest and broken json structure', async () => {
    const full = ndjson();
    expect((await verifyExport(chunks(full.slice(0, full.indexOf('{"type":"manifest"'))))).problems).toContain(
      'the file has no manifest: the export is truncated',
    );
    expect((await verifyExport(chunks(full.slice(0, -5)))).problems[0]).toMatch(/ends in the middle of a line/);
    expect((await verifyExport(chunks(`${full}{"x":1}\n`))).problems).toEqual(['line 6: nothing may follow the manifest']);
    const noComma = await verifyExport(chunks(json().replace('\\"y\\""},\n', '\\"y\\""}\n')));
    expect(noComma.problems).toContain('line 4: rows must be separated by commas');
  });

  it('refuses what is not an export, and an empty file', async () => {
    expect((await verifyExport(chunks('{"hello":"world"}\n'))).problems).toEqual(['line 1 is not the header of a tenant export']);
    expect((await verifyExport(chunks(ndjson().replace('"version":1', '"version":2')))).problems).toEqual([
      'export format version 2 is not supported (only 1)',
    ]);
    expect((await verifyExport(chunks(''))).problems).toEqual(['the file is empty', 'the file has no manifest: the export is truncated']);
  });
});
