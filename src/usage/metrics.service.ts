import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, CounterConfiguration, Gauge, GaugeConfiguration, Histogram, HistogramConfiguration, Registry } from 'prom-client';

type Metric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * This app instance's Prometheus metrics: one Registry per app, never prom-client's global one
 * (several app instances run in one test process, and each must count only its own traffic).
 * Other modules register their metrics here through counter/gauge/histogram.
 *
 * Labels must have few values: a route template, a tier, an outcome; never a tenant id, slug,
 * user id or database name (every distinct value is a time series kept forever by Prometheus).
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  private defaultsOn = false;

  /** A counter in this registry; asking again for the same name returns the one registered first. */
  counter<L extends string>(config: Omit<CounterConfiguration<L>, 'registers'>): Counter<L> {
    return this.existing(config.name, Counter) ?? new Counter<L>({ ...config, registers: [this.registry] });
  }

  /** A gauge in this registry (a `collect` callback lets it read its value at scrape time). */
  gauge<L extends string>(config: Omit<GaugeConfiguration<L>, 'registers'>): Gauge<L> {
    return this.existing(config.name, Gauge) ?? new Gauge<L>({ ...config, registers: [this.registry] });
  }

  histogram<L extends string>(config: Omit<HistogramConfiguration<L>, 'registers'>): Histogram<L> {
    return this.existing(config.name, Histogram) ?? new Histogram<L>({ ...config, registers: [this.registry] });
  }

  /** Process and Node.js metrics (CPU, memory, event loop lag, GC, handles); once per registry. */
  collectDefaults(): void {
    if (this.defaultsOn) return;
    this.defaultsOn = true;
    collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text exposition of everything registered. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  private existing<M extends Metric>(name: string, type: abstract new (...args: never[]) => M): M | undefined {
    const found = this.registry.getSingleMetric(name);
    if (found === undefined) return undefined;
    if (!(found instanceof type)) throw new Error(`metric ${name} is already registered as another type`);
    return found;
  }
}
