using Tally.Auth;
using Tally.Ledger.Engine;
using Tally.Ledger.Stores;

namespace Tally.Hosting;

/// <summary>
/// Starts the engine before the server takes requests and stops it after the server has drained them, so
/// on SIGTERM everything accepted is committed and answered before the process exits.
/// </summary>
public sealed class LedgerHost(LedgerEngine engine, OperatorKey operatorKey, TallyOptions options, ILogger<LedgerHost> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await engine.StartAsync(cancellationToken);
        await ConfigureOperatorKeyAsync(cancellationToken);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await engine.StopAsync();
        logger.LogInformation("Ledger stopped; every queued change was committed.");
    }

    private async Task ConfigureOperatorKeyAsync(CancellationToken cancellationToken)
    {
        if (options.OperatorKey is { Length: > 0 } configured)
        {
            operatorKey.Use(KeyMaterial.Sha256Hex(configured));
            return;
        }
        var stored = await engine.Store.GetSettingAsync(OperatorKey.SettingName, cancellationToken);
        if (stored is null && (await engine.Store.ListOrganizationsAsync(null, 1, null, cancellationToken)).Items.Count > 0)
        {
            // SPEC §1 generates a key on the first start of an empty store only. A store with organizations and no
            // stored key was started with TALLY_OPERATOR_KEY (whose hash is never stored): a key generated here
            // would differ from the one the other nodes, or the earlier starts, accept.
            throw new StoreOpenException(
                "This store holds organizations but no generated operator key: it was seeded (`tally seed`) or started with TALLY_OPERATOR_KEY. Set TALLY_OPERATOR_KEY for this start too.");
        }
        if (stored is null)
        {
            var generated = KeyMaterial.NewOperatorKey();
            var generatedHash = KeyMaterial.Sha256Hex(generated);
            var kept = await engine.Store.SetSettingOnceAsync(OperatorKey.SettingName, generatedHash, cancellationToken);
            if (kept == generatedHash)
            {
                // Printed to the console once, never logged: only its hash is stored.
                Console.WriteLine($"Operator key (shown once, keep it safe): {generated}");
            }
            stored = kept;
        }
        operatorKey.Use(stored);
    }
}

/// <summary>
/// Rule 6's background sweep: renews periods and expires holds for organizations nobody touched. Safe on
/// every node at once, because each advance happens under the organization's lock and is idempotent.
/// </summary>
public sealed class RenewalSweep(LedgerEngine engine, TallyOptions options, ILogger<RenewalSweep> logger) : BackgroundService
{
    /// <summary>
    /// Pages of due organizations one sweep advances at most (10,000 organizations): a boundary shared by a million
    /// of them is then swept in about 17 minutes of 10-second ticks, without the writer spending a minute on nothing
    /// else. Organizations in use are renewed when they are used, whatever the sweep has reached.
    /// </summary>
    public const int PagesPerSweepMax = 10;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.SweepInterval, engine.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken)) await SweepAsync(stoppingToken);
        }
        catch (OperationCanceledException)
        {
            // Shutting down.
        }
    }

    public async Task SweepAsync(CancellationToken cancellationToken)
    {
        try
        {
            // Page after page until a page is not full (or PagesPerSweepMax): organizations whose periods share a
            // boundary (a million anchored on the first of the month) would otherwise take a tick each thousand. A
            // page that holds only organizations the last one held made no progress (their advance did not move
            // their deadline), so the sweep stops there rather than ask for it again until the next tick.
            const int PageMax = Ledger.Stores.RelationalStore.DueOrganizationsPageMax;
            var now = engine.Time.GetUtcNow();
            IReadOnlyList<string> due;
            var previous = new HashSet<string>(StringComparer.Ordinal);
            var pages = 0;
            do
            {
                due = await engine.Store.FindOrganizationsDueAsync(now, PageMax, cancellationToken);
                if (due.All(previous.Contains)) break;
                await Task.WhenAll(due.Select(engine.AdvanceAsync));
                previous = [.. due];
            }
            while (due.Count == PageMax && ++pages < PagesPerSweepMax && !cancellationToken.IsCancellationRequested);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            logger.LogWarning(exception, "The renewal sweep failed; it will run again.");
        }
    }
}
