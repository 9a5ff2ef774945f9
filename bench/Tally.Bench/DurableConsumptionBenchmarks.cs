using BenchmarkDotNet.Attributes;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;

namespace Tally.Bench;

/// <summary>
/// Durable consumptions through the engine alone, in process, on the SQLite store (synchronous=FULL): every
/// operation is committed and synced before its await returns. The baseline awaits one consumption at a time,
/// so every commit carries a batch of one; the concurrent cases keep <see cref="Callers"/> consumptions in
/// flight, so the single writer groups them into shared commits. Results are per consumption.
/// </summary>
[MemoryDiagnoser]
public class DurableConsumptionBenchmarks
{
    /// <summary>Consumptions per invocation of the baseline: at one sync each, about a tenth of a second.</summary>
    private const int SequentialOperations = 512;

    /// <summary>Consumptions per invocation with concurrent callers: several per caller even at 1,024 callers.</summary>
    private const int ConcurrentOperations = 8_192;

    private string directory = "";
    private LedgerEngine engine = null!;
    private string organization = "";
    private long keys;
    private long batches;
    private long commands;

    /// <summary>Consumptions in flight at once in the concurrent case.</summary>
    [Params(64, 1_024)]
    public int Callers { get; set; }

    [GlobalSetup]
    public void Setup() => SetupAsync().GetAwaiter().GetResult();

    [GlobalCleanup]
    public void Cleanup()
    {
        var average = batches == 0 ? 0 : (double)commands / batches;
        Console.WriteLine($"// {commands} consumptions in {batches} commits: {average:F1} per commit on average");
        engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(directory, recursive: true);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = SequentialOperations, Description = "one awaited at a time (batch of 1)")]
    public async Task OneAwaitedAtATime()
    {
        for (var i = 0; i < SequentialOperations; i++) await ConsumeAsync();
    }

    [Benchmark(OperationsPerInvoke = ConcurrentOperations, Description = "Callers concurrent (group commit)")]
    public Task ConcurrentCallers()
    {
        var remaining = ConcurrentOperations;
        var callers = new Task[Callers];
        for (var caller = 0; caller < callers.Length; caller++)
        {
            callers[caller] = Task.Run(async () =>
            {
                while (Interlocked.Decrement(ref remaining) >= 0) await ConsumeAsync();
            });
        }
        return Task.WhenAll(callers);
    }

    private async Task ConsumeAsync()
    {
        var key = "k" + Interlocked.Increment(ref keys);
        var outcome = await engine.ConsumeAsync(new ConsumeRequest(organization, 1, key));
        if (!outcome.Succeeded) throw new InvalidOperationException($"{outcome.Error!.Code}: {outcome.Error.Message}");
    }

    private async Task SetupAsync()
    {
        directory = Path.Combine(Path.GetTempPath(), "tally-bench", Guid.NewGuid().ToString("N"));
        engine = new LedgerEngine(new SqliteLedgerStore(directory), TimeProvider.System);
        engine.BatchCompleted += report =>
        {
            Interlocked.Increment(ref batches);
            Interlocked.Add(ref commands, report.Commands);
        };
        await engine.StartAsync();
        var created = await engine.CreateOrganizationAsync("Bench");
        organization = created.Value!.Id;
        await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("prepaid", 0, PeriodKind.Year));
        var grant = await engine.GrantAsync(new GrantRequest(organization, Limits.GrantCreditsMax, "bench-balance"));
        if (!grant.Succeeded) throw new InvalidOperationException(grant.Error!.Message);
        // The setup's own commits are not the benchmark's.
        Interlocked.Exchange(ref batches, 0);
        Interlocked.Exchange(ref commands, 0);
    }
}
