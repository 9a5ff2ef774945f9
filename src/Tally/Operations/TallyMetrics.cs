using System.Diagnostics.Metrics;
using Tally.Ledger.Engine;
using Tally.Ledger.Stores.Sqlite;

namespace Tally.Operations;

/// <summary>
/// Tally's instruments, on System.Diagnostics.Metrics (the OpenTelemetry exporters are not available here);
/// <see cref="PrometheusExporter"/> renders them at `/metrics`.
/// </summary>
public sealed class TallyMetrics : IDisposable
{
    public const string MeterName = "Tally";

    private readonly Meter meter = new(MeterName);
    private readonly Counter<long> requests;
    private readonly Counter<long> consumptions;
    private readonly Histogram<long> batchSize;
    private readonly Histogram<double> commitLatency;

    public TallyMetrics(LedgerEngine engine)
    {
        requests = meter.CreateCounter<long>("tally_http_requests_total", description: "HTTP requests by route and status.");
        consumptions = meter.CreateCounter<long>("tally_consumptions_total", description: "Consumptions by outcome.");
        batchSize = meter.CreateHistogram<long>("tally_batch_size", description: "Commands per writer batch.");
        commitLatency = meter.CreateHistogram<double>("tally_commit_latency_milliseconds", description: "Time to decide, write and commit one batch.");
        meter.CreateObservableGauge("tally_queue_depth", () => (long)engine.QueueDepth, description: "Commands waiting for the writer.");
        meter.CreateObservableCounter("tally_key_cache_hits_total", () => engine.KeyCacheHits, description: "API key lookups answered from memory.");
        meter.CreateObservableCounter("tally_key_cache_misses_total", () => engine.KeyCacheMisses, description: "API key lookups that read the store.");
        if (engine.Store is SqliteLedgerStore sqlite) ObserveSqlite(sqlite);
        engine.BatchCompleted += report =>
        {
            batchSize.Record(report.Commands);
            commitLatency.Record(report.CommitMilliseconds, new KeyValuePair<string, object?>("committed", report.Committed ? "true" : "false"));
        };
    }

    /// <summary>
    /// The embedded store's background work: how far the tables lag the answered batches (what a read of usage or
    /// the ledger may wait for), and the checkpoints of its two logs (one run by the journal's writer pauses answers).
    /// </summary>
    private void ObserveSqlite(SqliteLedgerStore store)
    {
        meter.CreateObservableGauge("tally_sqlite_projector_lag_batches", () => store.ProjectorLagBatches,
            description: "Batches answered and not yet written into the tables.");
        meter.CreateObservableCounter("tally_sqlite_checkpoints_total", () => Checkpoints(store, counts => counts.Completed),
            description: "Checkpoints of each SQLite log.");
        meter.CreateObservableCounter("tally_sqlite_writer_checkpoints_total", () => Checkpoints(store, counts => counts.ByWriter),
            description: "Checkpoints run by a log's writer because the log had reached its limit.");
        meter.CreateObservableCounter("tally_sqlite_failed_checkpoints_total", () => Checkpoints(store, counts => counts.Failed),
            description: "Checkpoints SQLite refused; their pages wait for the next.");
    }

    private static Measurement<long>[] Checkpoints(SqliteLedgerStore store, Func<CheckpointCounts, long> count) =>
    [
        new(count(store.TablesCheckpoints), new KeyValuePair<string, object?>("log", "tables")),
        new(count(store.JournalCheckpoints), new KeyValuePair<string, object?>("log", "journal")),
    ];

    public void Request(string route, int status) =>
        requests.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("status", Boxed(status)));

    /// <summary>HTTP status codes boxed once, so that counting a request allocates nothing.</summary>
    private static readonly object[] BoxedStatuses = Enumerable.Range(0, 600).Select(status => (object)status).ToArray();

    private static object Boxed(int status) => (uint)status < BoxedStatuses.Length ? BoxedStatuses[status] : status;

    public void Consumption(string outcome) => consumptions.Add(1, new KeyValuePair<string, object?>("outcome", outcome));

    public void Dispose() => meter.Dispose();
}
