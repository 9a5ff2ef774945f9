using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Ledger.Engine;

namespace Tally.Operations;

public sealed record Health(string Status);

public static class OperationsApi
{
    public static IEndpointRouteBuilder MapOperations(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("").WithTags("Operations");
        group.MapGet("/healthz", () => TypedResults.Ok(new Health("alive"))).WithName("Healthz");
        group.MapGet("/readyz", Ready).WithName("Readyz").Produces<Health>(StatusCodes.Status503ServiceUnavailable);
        group.MapGet("/metrics", (PrometheusExporter exporter) => TypedResults.Text(exporter.Render(), "text/plain; version=0.0.4; charset=utf-8"))
            .WithName("Metrics").WithSummary("Prometheus text format.");
        return routes;
    }

    /// <summary>
    /// How long the readiness query may take: a load balancer's check must get an answer while the database hangs
    /// (frozen, or a network path that drops packets), or it cannot take the node out (a review measured 49 s).
    /// </summary>
    public static readonly TimeSpan ReadinessQueryTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Ready when the writer runs and the store answers a query within <see cref="ReadinessQueryTimeout"/>.</summary>
    public static async Task<Results<Ok<Health>, JsonHttpResult<Health>>> Ready(LedgerEngine engine, ReadinessQuery readiness, CancellationToken cancellationToken)
    {
        if (!engine.IsRunning) return TypedResults.Json(new Health("writer not running"), statusCode: 503);
        try
        {
            // The wait is bounded apart from the query's cancellation: against a frozen PostgreSQL server, Npgsql's
            // cancellation itself waited a minute (measured). The query is left to end on its own.
            await readiness.Current().WaitAsync(ReadinessQueryTimeout, cancellationToken);
            return TypedResults.Ok(new Health("ready"));
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return TypedResults.Json(new Health("store unreachable"), statusCode: 503);
        }
    }
}

/// <summary>
/// The store query that readiness checks wait for: one at a time per node, which every check arriving meanwhile
/// joins. While the database hangs, each check used to leave its own query behind, holding a pooled connection
/// until the query's own timeout, so that a load balancer checking every second took a connection a second.
/// </summary>
public sealed class ReadinessQuery(LedgerEngine engine, TimeProvider time)
{
    /// <summary>
    /// How long checks join a query that has not ended before one starts another: a query on a connection that died
    /// silently may wait much longer than its cancellation (Npgsql's took a minute against a frozen server), and the
    /// node must be seen ready soon after the database is back. So at most one query is left behind per this time.
    /// </summary>
    public static readonly TimeSpan JoinedAtMost = 5 * OperationsApi.ReadinessQueryTimeout;

    private readonly Lock gate = new();
    private Task? inFlight;
    private long startedAt;

    /// <summary>The query under way, or a new one when the last has ended (answered or failed) or is too old to join.</summary>
    public Task Current()
    {
        lock (gate)
        {
            if (inFlight is { IsCompleted: false } running && time.GetElapsedTime(startedAt) < JoinedAtMost) return running;
            startedAt = time.GetTimestamp();
            var query = RunAsync();
            // Observed here too: checks that stopped waiting before it failed never see its error.
            _ = query.ContinueWith(static ended => ended.Exception, TaskContinuationOptions.OnlyOnFaulted);
            inFlight = query;
            return query;
        }
    }

    private async Task RunAsync()
    {
        using var timeout = new CancellationTokenSource(OperationsApi.ReadinessQueryTimeout);
        await engine.Store.GetSettingAsync("readiness", timeout.Token);
    }
}
