using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores;
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
        var (organization, receipts) = await ConsumeWhileTheTablesAreLockedAsync(directory, () => CopyAsACrashWouldLeaveIt(directory, crashed));

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
        // The copy was written under a temporary name and renamed when complete: nothing else is left beside it.
        Assert.Empty(Directory.GetFiles(root, "*.partial*"));

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
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task WhileTheTablesLagTheWriterFindsWhatItAnsweredAndAReadOfTheTablesWaitsForThem()
    {
        await using var locked = await LockedTables.StartAsync(Path.Combine(root, "live"));
        var (store, engine, organization) = (locked.Store, locked.Engine, locked.Organization);

        // Answered, and only in the journal and the writer's memory.
        var consumption = LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 10, "pending-key")));
        Assert.Equal(0, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM consumptions"));
        // Its key is found: the retry is a replay of the same consumption, not a second one.
        var retry = await engine.ConsumeAsync(new ConsumeRequest(organization, 10, "pending-key"));
        Assert.True(retry.Replayed);
        Assert.Equal(consumption.Id, retry.Value!.Id);
        // The consumption is found, with the refunded total of the batch before: 4 then 6 credits may go back, not 7.
        LedgerHarness.Value(await engine.RefundAsync(organization, consumption.Id, 4, "refund-1"));
        var tooMuch = await engine.RefundAsync(organization, consumption.Id, 7, "refund-2");
        Assert.False(tooMuch.Succeeded);
        Assert.Equal(10, LedgerHarness.Value(await engine.RefundAsync(organization, consumption.Id, 6, "refund-3")).RefundedTotal);

        // A read of the tables started now returns only after they hold everything answered before it.
        var entries = engine.Store.ListEntriesAsync(organization, null, 100, CancellationToken.None);
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        locked.Unlock();
        var page = await entries;
        Assert.Contains(page.Items, entry => entry.ReferenceId == consumption.Id && entry.Credits == -10);
        Assert.Equal(2, page.Items.Count(entry => entry.Kind == "refund"));
        Assert.Equal(0, LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Used);
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task WhileTheTablesCannotBeWrittenTheWriterStopsAnsweringOnceItsLimitOfRowsWaitsForThem()
    {
        const int UnwrittenRowsMax = 300;
        const int Attempts = 400;
        await using var locked = await LockedTables.StartAsync(Path.Combine(root, "live"), UnwrittenRowsMax);
        var (store, engine, organization) = (locked.Store, locked.Engine, locked.Organization);

        // One at a time, so that each is a batch of its own: a consumption is three rows (its record, its key, its
        // entry) and a batch adds its organization's and grant's, so the limit is reached after about sixty.
        var answered = 0;
        var sending = Task.Run(async () =>
        {
            for (var index = 0; index < Attempts; index++)
            {
                LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 1, "bounded-" + index)));
                Interlocked.Increment(ref answered);
            }
        });
        // The projector takes what waits when its first gathering ends and then waits for the lock; once the rows
        // not written reach the limit, the writer waits before answering more.
        for (var check = 0; check < 100 && store.UnwrittenRows < UnwrittenRowsMax; check++) await Task.Delay(TimeSpan.FromMilliseconds(100));
        var stalled = Volatile.Read(ref answered);
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        Assert.Equal(stalled, Volatile.Read(ref answered));
        Assert.InRange(stalled, 1, Attempts - 1);
        Assert.InRange(store.UnwrittenRows, UnwrittenRowsMax, UnwrittenRowsMax + 5);

        locked.Unlock();
        await sending;
        await store.WaitForTablesAsync();
        Assert.Equal(Attempts, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM consumptions"));
        Assert.Equal(Attempts, LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Used);
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task ManyBatchesWrittenIntoTheTablesAtOnceLeaveEachRowInItsLastState()
    {
        await using var locked = await LockedTables.StartAsync(Path.Combine(root, "live"));
        var (store, engine, organization) = (locked.Store, locked.Engine, locked.Organization);

        // One batch each, all written by the projector's next transaction: the organization's row is written by
        // every batch, with its deadline only by the hold's (the hold's expiry is the next deadline); the cancellation
        // expires the period's allowance and the subscription resumed in the same period issues another, and both
        // allowances are written again later.
        LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 5, "before-hold")));
        var hold = LedgerHarness.Value(await engine.HoldAsync(new HoldRequest(organization, 7, "hold", TtlSeconds: 600)));
        LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 3, "after-hold")));
        LedgerHarness.Value(await engine.CancelSubscriptionAsync(organization));
        LedgerHarness.Value(await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("large", 5_000, PeriodKind.Year)));
        var last = LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 2, "after-plan-change")));
        locked.Unlock();
        await store.WaitForTablesAsync();

        Assert.Equal(hold.ExpiresAt.ToUnixTimeMilliseconds(),
            SqliteFile.Scalar(store.DatabasePath, "SELECT next_deadline FROM organizations WHERE id = @o", ("@o", organization)));
        var balance = LedgerHarness.Value(await engine.GetBalanceAsync(organization));
        Assert.Equal(last.Remaining, balance.Remaining);
        var live = balance.Grants.Single();
        Assert.Equal(live.Remaining, SqliteFile.Scalar(store.DatabasePath,
            "SELECT remaining FROM grants WHERE organization_id = @o AND expired = 0", ("@o", organization)));
        Assert.Equal(1, SqliteFile.Scalar(store.DatabasePath,
            "SELECT COUNT(*) FROM grants WHERE organization_id = @o AND expired = 1 AND source = 'allowance'", ("@o", organization)));
        Assert.Equal(7, SqliteFile.Scalar(store.DatabasePath, "SELECT credits FROM holds WHERE id = @h AND status = 'open'", ("@h", hold.Id)));
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task AnAllowanceResizedUpAndDownInBatchesWrittenAtOnceIsWrittenWithItsLastCredits()
    {
        await using var locked = await LockedTables.StartAsync(Path.Combine(root, "live"));
        var (store, engine, organization) = (locked.Store, locked.Engine, locked.Organization);
        var anchor = LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Subscription.Anchor!.Value;

        // One batch each, all written by the projector's next transaction: the allowance is resized (credits change)
        // by two batches and only spent (remaining changes) by the others, the last of which comes after the resizes.
        var consumption = LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 300, "before-upgrade")));
        LedgerHarness.Value(await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("up", 5_000, PeriodKind.Year, anchor)));
        LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 3, "after-upgrade")));
        LedgerHarness.Value(await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("down", 100, PeriodKind.Year, anchor)));
        LedgerHarness.Value(await engine.RefundAsync(organization, consumption.Id, 250, "refund"));
        LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 1, "after-downgrade")));
        locked.Unlock();
        await store.WaitForTablesAsync();

        var allowance = LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Grants.Single();
        Assert.Equal((100L, 46L), (allowance.Credits, allowance.Remaining));
        Assert.Equal(allowance.Credits, SqliteFile.Scalar(store.DatabasePath,
            "SELECT credits FROM grants WHERE organization_id = @o AND expired = 0", ("@o", organization)));
        Assert.Equal(allowance.Remaining, SqliteFile.Scalar(store.DatabasePath,
            "SELECT remaining FROM grants WHERE organization_id = @o AND expired = 0", ("@o", organization)));
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task ABatchTheTablesRefuseIsNotHalfWrittenStopsTheStoreAndStaysInTheJournal()
    {
        var directory = Path.Combine(root, "live");
        await using (var locked = await LockedTables.StartAsync(directory))
        {
            var (store, engine, organization) = (locked.Store, locked.Engine, locked.Organization);
            // Answered from the journal while the projector waits for the lock; then another writer puts the same key
            // into the tables, so that the projector's insert of the batch's key fails after its other rows.
            var answered = LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 1, "refused-key")));
            locked.CommitWith("INSERT INTO idempotency_keys (organization_id, key, fingerprint, result, created_at) VALUES (@o, 'refused-key', 'x', '{}', 0)",
                ("@o", organization));

            // Reads of the tables and later batches fail, rather than answer from tables that lack an answered batch.
            await Assert.ThrowsAsync<InvalidOperationException>(store.WaitForTablesAsync);
            var later = await engine.ConsumeAsync(new ConsumeRequest(organization, 1, "after-refusal"));
            Assert.Equal(ErrorCode.StoreFailure, later.Error?.Code);
            // Nothing of the refused transaction is in the tables: not the consumption, nor its entry, written before the key.
            Assert.Equal(0, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM consumptions"));
            Assert.Equal(0, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM ledger_entries WHERE reference_id = @c", ("@c", answered.Id)));
        }

        // The journal keeps the batch, and the store will not serve until the tables take it.
        await using var reopened = new LedgerEngine(new SqliteLedgerStore(directory), TimeProvider.System);
        var refused = await Assert.ThrowsAsync<StoreOpenException>(() => reopened.StartAsync());
        Assert.Contains("the journal keeps them", refused.Message);
    }

    [Fact]
    public async Task ABatchDecidedWhileTheOneBeforeIsBeingJournaledIsDecidedOnTopOfIt()
    {
        var (engine, store, organization) = await StartWithOrganizationAsync(Path.Combine(root, "live"));
        await using var stopped = engine;

        // Another connection holds the journal's write lock, so the first batch's journal commit waits for it.
        using var blocker = SqliteFile.Open(store.JournalPath);
        SqliteFile.Execute(blocker, "BEGIN IMMEDIATE");
        var first = engine.ConsumeAsync(new ConsumeRequest(organization, 600, "first"));
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        // Decided meanwhile: 600 more credits would overspend what the first batch left, and the first key is a replay.
        var second = engine.ConsumeAsync(new ConsumeRequest(organization, 600, "second"));
        var retry = engine.ConsumeAsync(new ConsumeRequest(organization, 600, "first"));
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        Assert.False(first.IsCompleted, "answered before its journal commit");
        SqliteFile.Execute(blocker, "ROLLBACK");

        var consumed = LedgerHarness.Value(await first);
        Assert.Equal(400, consumed.Remaining);
        Assert.Equal(ErrorCode.InsufficientCredits, (await second).Error?.Code);
        Assert.True((await retry).Replayed);
        Assert.Equal(consumed.Id, (await retry).Value!.Id);
        Assert.Equal(600, LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Used);
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task WhenABatchFailsToBeJournaledTheBatchDecidedOnItFailsTooAndNeitherLeavesAnything()
    {
        var (engine, store, organization) = await StartWithOrganizationAsync(Path.Combine(root, "live"));
        await using var stopped = engine;

        // The journal refuses the one batch whose rows hold the key "poison-key"; its commit waits for another
        // connection's lock meanwhile, so that the next batch is decided on top of it.
        SqliteFile.Execute(store.JournalPath, """
            CREATE TRIGGER poison BEFORE INSERT ON batches WHEN instr(NEW.changes, CAST('poison-key' AS BLOB)) > 0
            BEGIN SELECT RAISE(ABORT, 'refused by the test'); END
            """);
        using var blocker = SqliteFile.Open(store.JournalPath);
        SqliteFile.Execute(blocker, "BEGIN IMMEDIATE");
        var poisoned = engine.ConsumeAsync(new ConsumeRequest(organization, 600, "poison-key"));
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        var decidedOnIt = engine.ConsumeAsync(new ConsumeRequest(organization, 300, "after-poison"));
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        SqliteFile.Execute(blocker, "ROLLBACK");

        Assert.Equal(ErrorCode.StoreFailure, (await poisoned).Error?.Code);
        // Journaled alone it would pass the trigger, with 100 credits left by a consumption that never happened.
        Assert.Equal(ErrorCode.StoreFailure, (await decidedOnIt).Error?.Code);
        Assert.Equal(0, LedgerHarness.Value(await engine.GetBalanceAsync(organization)).Used);
        // Their keys were not kept either: the same request now makes a new consumption, on the whole balance.
        var retried = await engine.ConsumeAsync(new ConsumeRequest(organization, 300, "after-poison"));
        Assert.False(retried.Replayed);
        Assert.Equal(700, LedgerHarness.Value(retried).Remaining);
        await AssertVerifiesAsync(engine);
    }

    [Fact]
    public async Task ASecondStoreOnTheSameFolderRefusesToStartAndTheFirstGoesOnUntouched()
    {
        var directory = Path.Combine(root, "live");
        var (first, _, organization) = await StartWithOrganizationAsync(directory);
        LedgerHarness.Value(await first.ConsumeAsync(new ConsumeRequest(organization, 1, "before-second")));

        await using (var second = new LedgerEngine(new SqliteLedgerStore(directory), TimeProvider.System))
        {
            var refused = await Assert.ThrowsAsync<StoreOpenException>(() => second.StartAsync());
            Assert.Contains("Another Tally store is open", refused.Message);
        }
        LedgerHarness.Value(await first.ConsumeAsync(new ConsumeRequest(organization, 1, "after-second")));
        await AssertVerifiesAsync(first);
        await first.DisposeAsync();

        // Stopped, the first one leaves the folder to the next.
        await using var next = new LedgerEngine(new SqliteLedgerStore(directory), TimeProvider.System);
        await next.StartAsync();
        Assert.Equal(2, LedgerHarness.Value(await next.GetBalanceAsync(organization)).Used);
    }

    [Fact]
    public async Task AStoreWhoseJournalDoesNotContinueItsTablesRefusesToStart()
    {
        var directory = Path.Combine(root, "live");
        var broken = Path.Combine(root, "broken");
        await ConsumeWhileTheTablesAreLockedAsync(directory, () => CopyAsACrashWouldLeaveIt(directory, broken));
        // The first batch the tables lack is gone from the journal: the first of the consumptions, one batch each.
        SqliteFile.Execute(Path.Combine(broken, SqliteLedgerStore.JournalFileName),
            "DELETE FROM batches WHERE sequence = (SELECT MAX(sequence) FROM batches) - @later", ("@later", Consumptions - 1));

        await using var store = new SqliteLedgerStore(broken);
        var refused = await Assert.ThrowsAsync<StoreOpenException>(() => store.InitializeAsync(CancellationToken.None));
        Assert.Contains("does not continue", refused.Message);
    }

    /// <summary>
    /// Consumes while another connection holds tally.db's write lock, checks that the answers are in the journal and
    /// not in the tables, runs <paramref name="whileLocked"/>, and closes the store.
    /// </summary>
    private static async Task<(string Organization, Dictionary<string, string> Receipts)> ConsumeWhileTheTablesAreLockedAsync(
        string directory, Func<Task> whileLocked)
    {
        await using var locked = await LockedTables.StartAsync(directory);
        var (store, engine, organization) = (locked.Store, locked.Engine, locked.Organization);
        var receipts = new Dictionary<string, string>();
        for (var index = 0; index < Consumptions; index++)
        {
            var key = "key-" + index;
            receipts[key] = LedgerHarness.Value(await engine.ConsumeAsync(new ConsumeRequest(organization, 1, key))).Id;
        }
        Assert.Equal(0, SqliteFile.Scalar(store.DatabasePath, "SELECT COUNT(*) FROM consumptions"));
        Assert.True(SqliteFile.Scalar(store.JournalPath, "SELECT COUNT(*) FROM batches") >= Consumptions);
        await whileLocked();
        locked.Unlock();
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
        await AssertVerifiesAsync(engine);
    }

    private static async Task AssertVerifiesAsync(LedgerEngine engine)
    {
        var report = await engine.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, string.Join("; ", report.Differences));
    }

    /// <summary>A started engine on a store in <paramref name="directory"/>, with one organization of 1,000 credits a year.</summary>
    private static async Task<(LedgerEngine Engine, SqliteLedgerStore Store, string Organization)> StartWithOrganizationAsync(
        string directory, int? unwrittenRowsMax = null)
    {
        var store = new SqliteLedgerStore(directory, WalCheckpointer.LogPagesMax, unwrittenRowsMax);
        var engine = new LedgerEngine(store, TimeProvider.System);
        await engine.StartAsync();
        var organization = LedgerHarness.Value(await engine.CreateOrganizationAsync("journal")).Id;
        LedgerHarness.Value(await engine.PutSubscriptionAsync(organization, new SubscriptionRequest("small", 1_000, PeriodKind.Year)));
        return (engine, store, organization);
    }

    /// <summary>
    /// The store's files as a crash would leave them, without the shared-memory indexes (rebuilt from the logs on open)
    /// and the lock file (held by the running store; a crash leaves nothing locked, and the next start creates it).
    /// </summary>
    private static Task CopyAsACrashWouldLeaveIt(string directory, string copy)
    {
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(directory).Where(file =>
            !file.EndsWith("-shm", StringComparison.Ordinal) && Path.GetFileName(file) != SqliteLedgerStore.LockFileName))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// A started store with one subscribed organization, whose tables hold everything so far, and another
    /// connection holding tally.db's write lock until <see cref="Unlock"/>.
    /// </summary>
    private sealed class LockedTables(SqliteLedgerStore store, LedgerEngine engine, string organization, SqliteConnection blocker) : IAsyncDisposable
    {
        public SqliteLedgerStore Store => store;
        public LedgerEngine Engine => engine;
        public string Organization => organization;

        public static async Task<LockedTables> StartAsync(string directory, int? unwrittenRowsMax = null)
        {
            var (engine, store, organization) = await StartWithOrganizationAsync(directory, unwrittenRowsMax);
            await store.WaitForTablesAsync();
            var blocker = SqliteFile.Open(store.DatabasePath);
            SqliteFile.Execute(blocker, "BEGIN IMMEDIATE");
            return new LockedTables(store, engine, organization, blocker);
        }

        public void Unlock() => SqliteFile.Execute(blocker, "ROLLBACK");

        /// <summary>Runs a statement in the blocking connection's transaction and commits it, which ends the lock too.</summary>
        public void CommitWith(string sql, params (string Name, object Value)[] parameters)
        {
            SqliteFile.Execute(blocker, sql, parameters);
            SqliteFile.Execute(blocker, "COMMIT");
        }

        public async ValueTask DisposeAsync()
        {
            blocker.Dispose();
            await engine.DisposeAsync();
        }
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }
}
