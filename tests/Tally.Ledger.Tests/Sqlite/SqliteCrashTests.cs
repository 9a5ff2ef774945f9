using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;
using Xunit.Abstractions;

namespace Tally.Ledger.Tests.Sqlite;

/// <summary>
/// Rule 3 with a real process: the crash worker consumes under load and prints each acknowledged consumption;
/// it is killed with SIGKILL at a random moment, and the store, reopened, must hold every acknowledged change
/// exactly once and verify clean. Several rounds run on the same data, each crash landing on the last one's.
/// </summary>
public sealed class SqliteCrashTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>Kill-and-recover rounds: each lands the kill at a different point of a batch.</summary>
    private const int Rounds = 6;

    /// <summary>Longest random wait between the worker's first acknowledgement and the kill.</summary>
    private const int KillDelayMillisecondsMax = 700;

    /// <summary>How long a worker may take to start and acknowledge something before the test gives up on it.</summary>
    private static readonly TimeSpan WorkerStartTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Replays sent at once: under the engine's queue capacity, so none is refused as overloaded.</summary>
    private const int ReplayChunk = 4_096;

    private readonly string dataDirectory = Path.Combine(Path.GetTempPath(), "tally-crash", Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task EveryConsumptionAcknowledgedBeforeASigkillIsStoredExactlyOnce()
    {
        var organization = await PrepareOrganizationAsync();
        var random = new Random();
        var acknowledged = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var round = 1; round <= Rounds; round++)
        {
            var delay = random.Next(KillDelayMillisecondsMax);
            var acks = await RunAndKillWorkerAsync(organization, $"round{round}", TimeSpan.FromMilliseconds(delay));
            foreach (var (key, id) in acks) acknowledged.Add(key, id);
            // Each round checks its own acknowledgements; the last round checks every one made since the start.
            var stored = await AssertRecoveredAsync(organization, round == Rounds ? acknowledged : acks, acknowledged.Count);
            output.WriteLine($"round {round}: killed {delay} ms after the first acknowledgement; {acks.Count} acknowledged, "
                + $"{stored - acknowledged.Count} committed but not acknowledged so far, {stored} stored in all");
        }
    }

    private async Task<string> PrepareOrganizationAsync()
    {
        await using var engine = new LedgerEngine(new SqliteLedgerStore(dataDirectory), TimeProvider.System);
        await engine.StartAsync();
        var organization = Value(await engine.CreateOrganizationAsync("Crash")).Id;
        Value(await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("prepaid", 0, PeriodKind.Year)));
        Value(await engine.GrantAsync(new GrantRequest(organization, Limits.GrantCreditsMax, "big-balance")));
        return organization;
    }

    private async Task<Dictionary<string, string>> RunAndKillWorkerAsync(string organization, string prefix, TimeSpan killDelay)
    {
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { WorkerPath(), dataDirectory, organization, prefix }) start.ArgumentList.Add(argument);
        using var worker = Process.Start(start) ?? throw new InvalidOperationException("The crash worker did not start.");
        var lines = new ConcurrentQueue<string>();
        var firstAck = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = Task.Run(async () =>
        {
            while (await worker.StandardOutput.ReadLineAsync() is { } line)
            {
                lines.Enqueue(line);
                if (line.StartsWith("ack ", StringComparison.Ordinal)) firstAck.TrySetResult();
            }
        });
        var errors = worker.StandardError.ReadToEndAsync();
        try
        {
            await firstAck.Task.WaitAsync(WorkerStartTimeout);
            await Task.Delay(killDelay);
        }
        finally
        {
            // Read before the kill: a worker that stopped on its own (an error) cannot prove anything about crashes.
            var exitedEarly = worker.HasExited;
            worker.Kill(); // SIGKILL: no shutdown, no flush, no rollback.
            await worker.WaitForExitAsync();
            if (exitedEarly) Assert.Fail("the worker stopped before it was killed: " + await errors);
        }
        await reading;
        var acks = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var parts = line.Split(' ');
            if (parts is ["ack", var key, var id]) acks.Add(key, id);
            else Assert.Equal("ready", line);
        }
        return acks;
    }

    /// <summary>Reopens the store, replays what was acknowledged, checks counts and verify; returns the consumptions stored.</summary>
    private async Task<long> AssertRecoveredAsync(string organization, IReadOnlyDictionary<string, string> toReplay, long acknowledgedSoFar)
    {
        await using var engine = new LedgerEngine(new SqliteLedgerStore(dataDirectory), TimeProvider.System);
        await engine.StartAsync();
        foreach (var chunk in toReplay.Chunk(ReplayChunk))
        {
            var replays = await Task.WhenAll(chunk.Select(ack => engine.ConsumeAsync(new ConsumeRequest(organization, 1, ack.Key))));
            for (var i = 0; i < chunk.Length; i++)
            {
                Assert.True(replays[i].Replayed, $"{chunk[i].Key} was acknowledged but is not in the store: its retry "
                    + (replays[i].Succeeded ? "was consumed afresh" : $"failed with {replays[i].Error!.Code}"));
                Assert.Equal(chunk[i].Value, replays[i].Value!.Id);
            }
        }
        var file = Path.Combine(dataDirectory, SqliteLedgerStore.FileName);
        var consumptions = SqliteFile.Scalar(file, "SELECT COUNT(*) FROM consumptions WHERE organization_id = @o", ("@o", organization));
        var keys = SqliteFile.Scalar(file, "SELECT COUNT(*) FROM idempotency_keys WHERE organization_id = @o", ("@o", organization));
        var consumeEntries = SqliteFile.Scalar(file, "SELECT COUNT(*) FROM ledger_entries WHERE organization_id = @o AND kind = 'consume'", ("@o", organization));
        var distinctReferences = SqliteFile.Scalar(file,
            "SELECT COUNT(DISTINCT reference_id) FROM ledger_entries WHERE organization_id = @o AND kind = 'consume'", ("@o", organization));
        var balance = Value(await engine.GetBalanceAsync(organization));
        // The grant key is the one idempotency key that is not a consumption's.
        Assert.Equal(consumptions + 1, keys);
        Assert.Equal(consumptions, consumeEntries);
        Assert.Equal(consumptions, distinctReferences);
        Assert.Equal(consumptions, balance.Used);
        Assert.Equal(Limits.GrantCreditsMax - consumptions, balance.Remaining);
        // Changes that were committed but whose acknowledgement died with the process may add to the count, never subtract.
        Assert.InRange(consumptions, acknowledgedSoFar, long.MaxValue);
        var report = await engine.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, "verify found: " + string.Join("; ", report.Differences));
        return consumptions;
    }

    private static T Value<T>(Outcome<T> outcome) => Contract.LedgerHarness.Value(outcome);

    /// <summary>The dotnet host that runs this test (the CLI exports it to its children), or the one on the PATH.</summary>
    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    /// <summary>The worker's dll as its build recorded it (see the test project), else found beside this project.</summary>
    private static string WorkerPath()
    {
        const string FileName = "Tally.Ledger.CrashWorker.dll";
        var recorded = typeof(SqliteCrashTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .SingleOrDefault(attribute => attribute.Key == "CrashWorkerPath")?.Value;
        if (File.Exists(recorded)) return recorded;
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var project = Path.Combine(directory.FullName, "tests", "Tally.Ledger.CrashWorker", "bin");
            if (!Directory.Exists(project)) continue;
            var built = Directory.GetFiles(project, FileName, SearchOption.AllDirectories).OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
            if (built is not null) return built;
        }
        throw new FileNotFoundException($"{FileName} was not built; build tests/Tally.Ledger.CrashWorker (the test project references it).");
    }

    public void Dispose()
    {
        try { Directory.Delete(dataDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
