using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;
using Tally.Ledger.Tests.Contract;

namespace Tally.Ledger.Tests.Sqlite;

/// <summary>
/// The SQLite store answers a batch once its journal row is committed, and writes it into the tables afterwards
/// (SqliteLedgerStore). Holding tally.db's write lock from another connection stops the projector at its next
/// batch while the journal goes on, so these tests can show what the journal alone must carry.
/// </summary>
public sealed class SqliteJournalTests : IDisposable
{
    private const int Consumptions = 20;

    private readonly string root = Path.Combine(Path.GetTempPath(), "tally-journal-tests", Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task BatchesAnsweredButNotYetInTheTablesAreWrittenIntoThemWhenTheStoreOpensAfterACrash()
    {
        var directory = Path.Combine(root, "live");
        var crashed = Path.Combine(root, "crashed");
        var (organization, receipts) = await ConsumeWhileTheTablesAreLockedAsync(directory, () =>
        {
            // The files as a crash would leave them, without the shared-memory index (rebuilt from the logs on open).
            Directory.CreateDirectory(crashed);
            foreach (var file in Directory.GetFiles(directory).Where(file => !file.EndsWith("-shm", StringComparison.Ordinal)))
            {
                File.Copy(file, Path.Combine(crashed, Path.GetFileName(file)));
            }
            return Task.CompletedTask;
        });

        await using var engine = new LedgerEngine(new SqliteLedgerStore(crashed), TimeProvider.System);
        await engine.StartAsync();
        await AssertHoldsEveryConsumptionAsync(engine, Path.Combine(crashed, SqliteLedgerStore.FileName), organization, receipts);
    }

    [Fact]
    public async Task ABackupTakenWhileBatchesAreOnlyInTheJournalHoldsThem()
    {
        var directory = Path.Combine(root, "live");
        var backup = Path.Combine(root, "backup.db");
        var (organization, receipts) = await ConsumeWhileTheTablesAreLockedAsync(directory,
            () => SqliteLedgerStore.BackupAsync(directory, backup, CancellationToken.None));

        // Restored as docs/operations.md says: the backup file is tally.db in an empty data folder.
        var restored = Path.Combine(root, "restored");
        Directory.CreateDirectory(restored);
        File.Copy(backup, Path.Combine(restored, SqliteLedgerStore.FileName));
        await using var engine = new LedgerEngine(new SqliteLedgerStore(restored), TimeProvider.System);
        await engine.StartAsync();
        await AssertHoldsEveryConsumptionAsync(engine, Path.Combine(restored, SqliteLedgerStore.FileName), organization, receipts);
        // The restored store journals on from the backup's last batch: a new consumption is stored and verified too.
        LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 1, "after-restore")));
        Assert.Equal(Consumptions + 1, LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Used);
        var report = await engine.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, string.Join("; ", report.Differences));
    }

    /// <summary>
    /// Consumes while another connection holds tally.db's write lock, checks that the answers are in the journal and
    /// not in the tables, runs <paramref name="whileLocked"/>, and closes the store.
    /// </summary>
    private static async Task<(string Organization, Dictionary<string, string> Receipts)> ConsumeWhileTheTablesAreLockedAsync(
        string directory, Func<Task> whileLocked)
    {
        var store = new SqliteLedgerStore(directory);
        await using var engine = new LedgerEngine(store, TimeProvider.System);
        await engine.StartAsync();
        var organization = LedgerHarness.Value(await engine.CreateOrganizationAsync("journal")).Id;
        LedgerHarness.Value(await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("big", 1_000, PeriodKind.Year)));
        await store.WaitForTablesAsync();

        using var blocker = SqliteFile.Open(store.DatabasePath);
        Run(blocker, "BEGIN IMMEDIATE");
        var receipts = new Dictionary<string, string>();
        for (var index = 0; index < Consumptions; index++)
        {
            var key = "key-" + index;
            receipts[key] = LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 1, key))).Id;
        }
        Assert.Equal(0, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM consumptions"));
        Assert.True(SqliteFile.Scalar(store.JournalPath, "SELECT COUNT(*) FROM batches") >= Consumptions);
        await whileLocked();
        Run(blocker, "ROLLBACK");
        return (organization, receipts);
    }

    private static async Task AssertHoldsEveryConsumptionAsync(LedgerEngine engine, string file, string organization, Dictionary<string, string> receipts)
    {
        Assert.Equal(Consumptions, SqliteFile.Scalar(file, "SELECT COUNT(*) FROM consumptions WHERE organization_id = @o", ("@o", organization)));
        Assert.Equal(Consumptions, LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Used);
        foreach (var (key, id) in receipts)
        {
            var replay = await engine.ConsumeAsync(new ConsumeRequest(organization, 1, key));
            Assert.True(replay.Replayed, $"{key} was answered but is not in the store");
            Assert.Equal(id, replay.Value!.Id);
        }
        var report = await engine.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, string.Join("; ", report.Differences));
    }

    private static void Run(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }
}
