using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;
using Tally.Ledger.Tests.Contract;

namespace Tally.Ledger.Tests.Sqlite;

/// <summary>
/// The write-ahead log is copied into the database by a checkpointer beside the writer, and starts over when it
/// reaches its limit (WalCheckpointer); with a small limit, a load many times its size shows both.
/// </summary>
public sealed class SqliteCheckpointTests : IDisposable
{
    private const int LogPagesMax = 2_000;
    private const int Organizations = 200;
    private const int Consumptions = 36_000;
    private const int Callers = 256;

    /// <summary>SQLite's page size on a new store, and the header of each page in the log.</summary>
    private const int PageBytes = 4_096, FrameHeaderBytes = 24;

    private readonly string directory = Path.Combine(Path.GetTempPath(), "tally-checkpoint-tests", Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task TheLogIsCopiedBesideTheWriterAndStartsOverAtItsLimit()
    {
        var store = new SqliteLedgerStore(directory, LogPagesMax);
        await using (var engine = new LedgerEngine(store, TimeProvider.System))
        {
            await engine.StartAsync();
            var organizations = new string[Organizations];
            for (var index = 0; index < Organizations; index++)
            {
                organizations[index] = LedgerHarness.Value(await engine.CreateOrganizationAsync("checkpoint-" + index)).Id;
                LedgerHarness.Value(await engine.PutSubscriptionAsync(organizations[index], new SubscriptionRequest("big", Limits.GrantCreditsMax, PeriodKind.Year)));
            }
            var next = -1;
            await Task.WhenAll(Enumerable.Range(0, Callers).Select(async _ =>
            {
                for (var sequence = Interlocked.Increment(ref next); sequence < Consumptions; sequence = Interlocked.Increment(ref next))
                {
                    LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organizations[sequence % Organizations], 1, "key-" + sequence)));
                }
            }));

            var checkpoints = store.TablesCheckpoints;
            // The load's pages went through the log many times its limit (36,000 consumptions over 200 organizations,
            // 6,000 to 13,000 pages whatever the projector gathers): the writer started it over several times, and
            // the background thread copied pages between those times.
            Assert.True(checkpoints.ByWriter >= 3, $"writer checkpoints: {checkpoints.ByWriter}");
            Assert.True(checkpoints.Completed > checkpoints.ByWriter, $"checkpoints: {checkpoints.Completed}");
            Assert.Equal(0, checkpoints.Failed);
            // The log file keeps its largest size; it never went far past the limit (one transaction's pages at most,
            // which the projector's gathering makes up to about 1,600 here).
            var logBytes = new FileInfo(store.DatabasePath + "-wal").Length;
            Assert.True(logBytes <= 3L * LogPagesMax * (PageBytes + FrameHeaderBytes), $"log file: {logBytes} bytes");
            var report = await store.VerifyAsync(CancellationToken.None);
            Assert.True(report.Clean, string.Join("; ", report.Differences));
        }

        // Every consumption is stored, read back on a connection of its own after the store closed.
        Assert.Equal(Consumptions, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM consumptions"));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(directory, recursive: true); } catch (IOException) { }
    }
}
