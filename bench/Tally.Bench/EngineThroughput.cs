using System.Diagnostics;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;

namespace Tally.Bench;

/// <summary>
/// T4 for the harness (bench/run.sh): the engine alone, in process, durable SQLite, for a fixed time with many
/// callers over many organizations, every consumption with its own key. Prints one line: consumptions per second.
/// </summary>
public static class EngineThroughput
{
    public static async Task<int> RunAsync(TimeSpan duration, int callers, int organizationCount)
    {
        var directory = Path.Combine(Path.GetTempPath(), "tally-throughput-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using var engine = new LedgerEngine(new SqliteLedgerStore(directory), TimeProvider.System);
            await engine.StartAsync();
            var organizations = new string[organizationCount];
            await Parallel.ForAsync(0, organizationCount, async (index, _) =>
            {
                var organization = (await engine.CreateOrganizationAsync("bench-" + index)).Value!;
                await engine.PutSubscriptionAsync(organization.Id, new SubscriptionRequest("bench", Limits.GrantCreditsMax, PeriodKind.Year));
                organizations[index] = organization.Id;
            });
            long commits = 0, commands = 0;
            // Batches are answered on the journal's thread as well as the writer's, so the counts are taken atomically.
            engine.BatchCompleted += report => { Interlocked.Increment(ref commits); Interlocked.Add(ref commands, report.Commands); };
            var stopwatch = Stopwatch.StartNew();
            long completed = 0;
            var callerTasks = Enumerable.Range(0, callers).Select(async caller =>
            {
                var random = new Random(caller);
                for (var sequence = 0; stopwatch.Elapsed < duration; sequence++)
                {
                    var outcome = await engine.ConsumeAsync(new ConsumeRequest(organizations[random.Next(organizationCount)], 1, $"{caller}-{sequence}"));
                    if (!outcome.Succeeded) throw new InvalidOperationException(outcome.Error!.Message);
                    Interlocked.Increment(ref completed);
                }
            });
            await Task.WhenAll(callerTasks);
            var seconds = stopwatch.Elapsed.TotalSeconds;
            Console.WriteLine($"consumptions_per_second={completed / seconds:F0} commits={commits} average_batch={(commits == 0 ? 0 : (double)commands / commits):F1}");
            var report = await engine.Store.VerifyAsync(CancellationToken.None);
            if (!report.Clean) throw new InvalidOperationException("verify: " + string.Join("; ", report.Differences));
            return 0;
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(directory, recursive: true);
        }
    }
}
