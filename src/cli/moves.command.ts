import { Command, Option } from 'commander';
import { isUuid } from '../../libs/postgres/index.js';
import { BillingError } from '../billing/billing.errors.js';
import { operatorActor } from '../lifecycle/actor.js';
import { describePlacement, isBeforeFlip, MoveEngine, MoveRecord } from '../lifecycle/move-engine.js';
import { CONTROL_SCHEMA, DatabaseRuntime, withOwner } from '../tenancy/placements.js';
import { TIERS, type Tier } from '../tenancy/tenant-route.js';
import { CliFailure, explainMissingControlPlane, UsageError } from './cli.errors.js';
import { formatTime, note, printTable, progressBar } from './output.js';
import { loadCliConfig, withServers } from './session.js';

/** The move engine on this command's servers (embedded ones started if so configured). */
function withEngine<T>(fn: (engine: MoveEngine, runtime: DatabaseRuntime) => Promise<T>): Promise<T> {
  const config = loadCliConfig();
  return withServers(config, async (runtime) => {
    const engine = new MoveEngine(runtime, {
      batchRows: config.lifecycle.moveBatchRows,
      freezeWaitMs: config.lifecycle.moveFreezeWaitMs,
      cleanupDelaySeconds: config.lifecycle.moveCleanupDelaySeconds,
    });
    try {
      return await fn(engine, runtime);
    } finally {
      await engine.close();
    }
  });
}

async function tenantIdOf(runtime: DatabaseRuntime, slug: string): Promise<string> {
  const rows = await withOwner(runtime.primary, runtime.primary.database, async (c) =>
    (await c.query<{ id: string }>(`SELECT id FROM ${CONTROL_SCHEMA}.tenants WHERE slug = $1`, [slug])).rows,
  ).catch(explainMissingControlPlane);
  if (!rows.length) throw new CliFailure(`no tenant has the slug '${slug}' (see: npm run cli -- tenants list)`);
  return rows[0].id;
}

function moveId(value: string): string {
  if (!isUuid(value)) throw new UsageError(`'${value}' is not a move id (a UUID, see: npm run cli -- moves list <slug>)`);
  return value;
}

const where = (m: MoveRecord, side: 'source' | 'target') => describePlacement(m[side]);

function printMoves(moves: MoveRecord[]): void {
  printTable(
    ['move', 'phase', 'from', 'to', 'rows copied', 'freeze ms', 'created', 'error'],
    moves.map((m) => [m.id, m.phase, where(m, 'source'), where(m, 'target'), `${m.rowsCopied}/${m.rowsTotal}`, m.freezeMs ?? '', formatTime(m.createdAt), m.error ?? '']),
  );
}

function printVerification(m: MoveRecord): void {
  if (!m.verification) return;
  printTable(
    ['table', 'source rows', 'target rows', 'source checksum', 'target checksum', 'equal'],
    Object.entries(m.verification.tables).map(([name, t]) => [name, t.source.rows, t.target.rows, t.source.checksum, t.target.checksum, t.ok ? 'yes' : 'NO']),
  );
}

/**
 * Runs a move in this process with a progress bar (rows copied, ETA, phase). Ctrl-C stops it
 * at its next step, resumable; the tenant keeps serving from its source meanwhile.
 */
async function runWithProgress(engine: MoveEngine, id: string): Promise<MoveRecord> {
  const controller = new AbortController();
  const onSigint = () => {
    note('\nstopping the move at its next step (it can be resumed) ...');
    controller.abort('stopped by the operator');
  };
  process.once('SIGINT', onSigint);
  const bar = progressBar('move [{bar}] {percentage}% | {value}/{total} rows | ETA {eta_formatted} | {phase}', { etaBuffer: 20, everyMs: 2_000 });
  let started = false;
  try {
    const result = await engine.run(id, {
      signal: controller.signal,
      onProgress: (m) => {
        if (!started && m.rowsTotal > 0) {
          bar.start(m.rowsTotal, m.rowsCopied, { phase: m.phase });
          started = true;
        }
        if (started) bar.update(m.rowsCopied, { phase: m.phase });
      },
    });
    if (started) bar.update(result.rowsCopied, { phase: result.phase });
    return result;
  } finally {
    bar.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

/** What happened, said plainly, and the exit code it deserves. */
function report(m: MoveRecord): void {
  printMoves([m]);
  printVerification(m);
  if (m.phase === 'flipped' || m.phase === 'cleaned') {
    note(`moved: now ${where(m, 'target')}; writes were frozen for ${m.freezeMs} ms`);
    if (m.phase === 'flipped') note(`the source (${where(m, 'source')}) is cleaned up after ${m.cleanupAfter ? formatTime(m.cleanupAfter) : 'its delay'}, or now with: npm run cli -- moves cleanup ${m.id}`);
    return;
  }
  if (isBeforeFlip(m.phase)) {
    throw new CliFailure(`move ${m.id} stopped in phase ${m.phase}${m.error ? ` (${m.error})` : ''}; the tenant serves from its source. Resume: npm run cli -- moves resume ${m.id}; roll back: npm run cli -- moves abort ${m.id}`);
  }
  throw new CliFailure(`move ${m.id} ${m.phase}: ${m.error ?? 'no reason recorded'}; the tenant stays at ${where(m, 'source')}`);
}

/** `tenants move <slug> --to <tier>`: added to the tenants command. */
export function addMoveCommand(tenants: Command): void {
  tenants
    .command('move')
    .description('Move a tenant to another tier or server, verified, without losing a write (runs here, with a progress bar)')
    .argument('<slug>', 'the tenant to move')
    .addOption(new Option('--to <tier>', 'the tier to move it to').choices(TIERS).makeOptionMandatory())
    .option('--server <key>', 'registered server key, dedicated tier only (default: the secondary server when there is one)')
    .option('--ignore-plan', "move it even to a tier the tenant's plan does not include (an operator override)")
    .addHelpText(
      'after',
      `
Phases: preparing (target created and migrated), copying (COPY in batches while the tenant stays
available), catching_up (what changed meanwhile), frozen (writes get 503 + Retry-After for the
cutover only; reads go on), verifying (row counts and checksums of every table on both sides),
flipped (routing table switched, every app instance told). The source is cleaned up after
MOVE_CLEANUP_DELAY_SECONDS (see: moves cleanup). Ctrl-C or a crash leaves the tenant on its source;
continue with 'moves resume <id>' or roll back with 'moves abort <id>'.

A tier the tenant's plan does not include is refused, as by the API (see: plans list, billing
show <slug>); --ignore-plan moves it there anyway.

Examples:
  $ npm run cli -- tenants move acme --to dedicated
  $ npm run cli -- tenants move acme --to dedicated --server secondary
  $ npm run cli -- tenants move acme --to shared
  $ npm run cli -- tenants move acme --to dedicated --ignore-plan`,
    )
    .action(async (slug: string, opts: { to: Tier; server?: string; ignorePlan?: boolean }) => {
      await withEngine(async (engine, runtime) => {
        const tenantId = await tenantIdOf(runtime, slug);
        if (opts.ignorePlan) note(`--ignore-plan: the plan of '${slug}' is not checked (the move's audit entry says so)`);
        const move = await engine
          .create(tenantId, { tier: opts.to, server: opts.server }, operatorActor(), { ignorePlan: opts.ignorePlan })
          .catch((err: unknown) => {
            if (err instanceof BillingError && err.code === 'PLAN_TIER_NOT_ALLOWED') {
              note(`(change the plan: npm run cli -- billing set-plan ${slug} <plan>; or pass --ignore-plan to move it anyway)`);
            }
            throw err;
          });
        note(`move ${move.id}: ${slug} from ${where(move, 'source')} to ${where(move, 'target')}`);
        report(await runWithProgress(engine, move.id));
      });
    });
}

export function movesCommand(): Command {
  const moves = new Command('moves').description('Follow, resume, abort and clean up moves of tenants between placements');

  moves
    .command('list')
    .description("Table of a tenant's moves, newest first")
    .argument('<slug>', 'the tenant')
    .action(async (slug: string) => {
      await withEngine(async (engine, runtime) => {
        const list = await engine.list(await tenantIdOf(runtime, slug));
        printMoves(list);
        note(`${list.length} move${list.length === 1 ? '' : 's'}`);
      });
    });

  moves
    .command('show')
    .description('One move: phase, progress, freeze time and its verification per table')
    .argument('<move-id>', 'the move', moveId)
    .action(async (id: string) => {
      await withEngine(async (engine) => {
        const m = await engine.get(id);
        printMoves([m]);
        printVerification(m);
        if (isBeforeFlip(m.phase)) note((await engine.isRunning(id)) ? 'running in another process' : 'interrupted: resume or abort it');
      });
    });

  moves
    .command('resume')
    .description('Continue an interrupted move from where it stopped (copied batches are kept), with a progress bar')
    .argument('<move-id>', 'the move', moveId)
    .action(async (id: string) => {
      await withEngine(async (engine) => report(await runWithProgress(engine, id)));
    });

  moves
    .command('abort')
    .description('Roll a move back before its flip: its target is removed and the tenant stays where it was')
    .argument('<move-id>', 'the move', moveId)
    .action(async (id: string) => {
      await withEngine(async (engine) => {
        const m = await engine.abort(id, operatorActor());
        printMoves([m]);
        note(m.phase === 'aborted' ? `move ${id} aborted; the tenant stays at ${where(m, 'source')}` : `abort requested; the process running move ${id} rolls it back at its next step`);
      });
    });

  moves
    .command('cleanup')
    .description('Clean up the source of a flipped move now, or (--due) of every move whose delay has passed')
    .argument('[move-id]', 'the move', moveId)
    .option('--due', 'every flipped move whose MOVE_CLEANUP_DELAY_SECONDS has passed')
    .action(async (id: string | undefined, opts: { due?: boolean }) => {
      if (!id === !opts.due) throw new UsageError('name one move, or pass --due');
      await withEngine(async (engine) => {
        if (id) {
          const m = await engine.cleanup(id, operatorActor());
          printMoves([m]);
          note(`cleaned up ${where(m, 'source')}`);
        } else {
          note(`${await engine.cleanupDue(operatorActor())} move source(s) cleaned up`);
        }
      });
    });

  return moves;
}
