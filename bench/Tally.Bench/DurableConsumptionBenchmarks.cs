using BenchmarkDotNet.Attributes;
using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;

namespace Tally.Bench;

/// <summary>
/// Durable consumptions through the engine alone, in process, on the SQLite store (synchronous=FULL): every
/// operation is committed and synced before its await returns. The baseline awaits one consumption at a time,
/// so every commit carries a batch of one; the concurrent cases keep <see cref="Callers"/> consumptions in
/// flight, so the single writer groups them into shared commits. Results are per consumption. An anchor in the
/// same run, a bare SQLite commit of one row with the same settings, shows what the disk alone costs per commit.
/// </summary>
[MemoryDiagnoser]
public class DurableConsumptionBenchmarks
{
    /// <summary>Consumptions per invocation of the baseline: at one sync each, about a tenth of a second.</summary>
    private const int SequentialOperations = 512;

    /// <summary>Consumptions per invocation with concurrent callers: several per caller even at 1,024 callers.</summary>
    private const int ConcurrentOperations = 8_192;

    /// <summary>
    /// Consumptions made before measuring: enough for SQLite's write-ahead log to pass its first checkpoint and be
    /// reused. While the log file still grows, each sync also commits file-size metadata and costs several times more.
    /// </summary>
    private const int PrewarmOperations = 4_096;

    private string directory = "";
    private LedgerEngine engine = null!;
    private string organization = "";
    private long keys;
    private long batches;
    private long commands;
    private SqliteConnection anchorConnection = null!;
    private SqliteCommand anchorInsert = null!;

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
        anchorInsert.Dispose();
        anchorConnection.Dispose();
        SqliteConnection.ClearAllPools();
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

    [Benchmark(OperationsPerInvoke = SequentialOperations, Description = "anchor: bare SQLite commit of one row")]
    public void BareSqliteCommit()
    {
        for (var i = 0; i < SequentialOperations; i++) CommitOneRow();
    }

    private void CommitOneRow()
    {
        using var transaction = anchorConnection.BeginTransaction(deferred: false);
        anchorInsert.Transaction = transaction;
        anchorInsert.Parameters[0].Value = "k" + Interlocked.Increment(ref keys);
        anchorInsert.ExecuteNonQuery();
        transaction.Commit();
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
        for (var i = 0; i < PrewarmOperations / 64; i++) await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => ConsumeAsync()));
        SetupAnchor();
        // The setup's own commits are not the benchmark's.
        Interlocked.Exchange(ref batches, 0);
        Interlocked.Exchange(ref commands, 0);
    }

    /// <summary>The anchor's own file, with the store's settings (WAL, synchronous=FULL), prewarmed the same way.</summary>
    private void SetupAnchor()
    {
        anchorConnection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path.Combine(directory, "anchor.db") }.ToString());
        anchorConnection.Open();
        using (var pragmas = anchorConnection.CreateCommand())
        {
            pragmas.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE rows (id INTEGER PRIMARY KEY, value TEXT NOT NULL)";
            pragmas.ExecuteNonQuery();
        }
        anchorInsert = anchorConnection.CreateCommand();
        anchorInsert.CommandText = "INSERT INTO rows (value) VALUES (@value)";
        anchorInsert.Parameters.Add(new SqliteParameter("@value", ""));
        for (var i = 0; i < PrewarmOperations; i++) CommitOneRow();
    }
}
