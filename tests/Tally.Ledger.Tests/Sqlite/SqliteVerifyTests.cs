using Tally.Ledger.Engine;
using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Sqlite;
using Tally.Ledger.Tests.Contract;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Sqlite;

/// <summary>
/// Rule 10 from the other side: the verify pass must notice a ledger that was changed behind the engine's back.
/// SQLite-only, because the corruption is done with SQL on the file. Each test repairs what it broke, so the
/// harness's closing verify pass also shows that a repaired ledger verifies clean again.
/// </summary>
public sealed class SqliteVerifyTests(SqliteStoreFactory factory) : IClassFixture<SqliteStoreFactory>
{
    [Fact]
    public async Task VerifyReportsAGrantWhoseRemainingWasChangedBehindTheLedger()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var organization = await ledger.OrganizationAsync(100);
        Value(await ledger.ConsumeAsync(organization, 30));
        var grant = (await ledger.BalanceAsync(organization)).Grants.Single().Id;
        var file = SqliteFile.PathOf(ledger);
        Assert.Equal(1, SqliteFile.Execute(file, "UPDATE grants SET remaining = remaining + 25 WHERE id = @id", ("@id", grant)));

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.False(report.Clean);
        Assert.Contains(report.Differences, difference => difference.Contains(grant) && difference.Contains("remaining 95, ledger says 70"));
        Assert.Contains(report.Differences, difference => difference.Contains($"organization {organization}: memory and disk disagree"));

        SqliteFile.Execute(file, "UPDATE grants SET remaining = remaining - 25 WHERE id = @id", ("@id", grant));
    }

    [Fact]
    public async Task VerifyReportsALedgerEntryThatWasDeleted()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 12));
        var file = SqliteFile.PathOf(ledger);
        var entry = (await ledger.EntriesAsync(organization)).Single(entry => entry.ReferenceId == consumption.Id);
        Assert.Equal(1, SqliteFile.Execute(file, "DELETE FROM ledger_entries WHERE id = @id", ("@id", entry.Id)));

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.False(report.Clean);
        Assert.Contains(report.Differences, difference => difference.Contains(entry.GrantId!) && difference.Contains("remaining 88, ledger says 100"));

        SqliteFile.Execute(file,
            "INSERT INTO ledger_entries (id, organization_id, kind, grant_id, credits, reference_id, created_at) VALUES (@id, @organization, 'consume', @grant, -12, @reference, 0)",
            ("@id", entry.Id), ("@organization", organization), ("@grant", entry.GrantId!), ("@reference", consumption.Id));
    }

    [Fact]
    public async Task VerifyReportsAnEntryForAGrantThatDoesNotExist()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var organization = await ledger.OrganizationAsync(100);
        var file = SqliteFile.PathOf(ledger);
        var ghost = Guid.NewGuid().ToString();
        SqliteFile.Execute(file,
            "INSERT INTO ledger_entries (organization_id, kind, grant_id, credits, created_at) VALUES (@organization, 'grant', @grant, 1000, 0)",
            ("@organization", organization), ("@grant", ghost));

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.False(report.Clean);
        Assert.Contains(report.Differences, difference => difference.Contains(ghost) && difference.Contains("does not exist"));

        SqliteFile.Execute(file, "DELETE FROM ledger_entries WHERE grant_id = @grant", ("@grant", ghost));
    }

    [Fact]
    public async Task VerifyReportsUsageThatDisagreesWithTheConsumptions()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 10));
        var file = SqliteFile.PathOf(ledger);
        SqliteFile.Execute(file, "UPDATE consumptions SET refunded = 4 WHERE id = @id", ("@id", consumption.Id));

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.False(report.Clean);
        Assert.Contains(report.Differences, difference => difference.Contains($"organization {organization}: used 10, consumptions say 6"));

        SqliteFile.Execute(file, "UPDATE consumptions SET refunded = 0 WHERE id = @id", ("@id", consumption.Id));
    }

    [Fact]
    public async Task VerifyReportsAHoldWhoseCreditsDisagreeWithWhatTheLedgerReserved()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 20));
        var file = SqliteFile.PathOf(ledger);
        SqliteFile.Execute(file, "UPDATE holds SET credits = 50 WHERE id = @id", ("@id", hold.Id));

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.False(report.Clean);
        Assert.Contains(report.Differences, difference => difference.Contains($"hold {hold.Id}: 50 credits, ledger reserved 20"));

        SqliteFile.Execute(file, "UPDATE holds SET credits = 20 WHERE id = @id", ("@id", hold.Id));
    }

    [Fact]
    public async Task VerifyReportsADiskThatDisagreesWithTheEnginesMemoryEvenWhenTheLedgerAddsUp()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var organization = await ledger.OrganizationAsync(100);
        var grant = (await ledger.BalanceAsync(organization)).Grants.Single().Id;
        var file = SqliteFile.PathOf(ledger);
        // A forged but self-consistent change: the grant and a matching entry, so every SQL check adds up.
        SqliteFile.Execute(file, "UPDATE grants SET remaining = 60 WHERE id = @id", ("@id", grant));
        SqliteFile.Execute(file,
            "INSERT INTO ledger_entries (organization_id, kind, grant_id, credits, created_at) VALUES (@organization, 'adjustment', @grant, -40, 0)",
            ("@organization", organization), ("@grant", grant));

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.Equal([$"organization {organization}: memory and disk disagree"], report.Differences);

        SqliteFile.Execute(file, "UPDATE grants SET remaining = 100 WHERE id = @id", ("@id", grant));
        SqliteFile.Execute(file, "DELETE FROM ledger_entries WHERE kind = 'adjustment' AND grant_id = @grant", ("@grant", grant));
    }

    [Fact]
    public async Task VerifyListsTheFirstDifferencesAndCountsEveryOne()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        // Each damaged grant is two differences: its remaining against the ledger, and the disk against memory.
        var damaged = RelationalStore.DifferencesListedMax;
        var organizations = new List<string>();
        for (var index = 0; index < damaged; index++) organizations.Add(await ledger.OrganizationAsync(100));
        var file = SqliteFile.PathOf(ledger);
        foreach (var organization in organizations)
        {
            Assert.Equal(1, SqliteFile.Execute(file, "UPDATE grants SET remaining = remaining - 1 WHERE organization_id = @organization",
                ("@organization", organization)));
        }

        var report = await ledger.Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.False(report.Clean);
        Assert.Equal(2 * damaged, report.DifferencesFound);
        Assert.Equal(RelationalStore.DifferencesListedMax, report.Differences.Count);

        foreach (var organization in organizations)
        {
            SqliteFile.Execute(file, "UPDATE grants SET remaining = remaining + 1 WHERE organization_id = @organization", ("@organization", organization));
        }
    }

    [Fact]
    public async Task TheSqliteStoreSyncsEveryCommitInWriteAheadLogMode()
    {
        await using var ledger = await LedgerHarness.StartAsync(factory);
        var store = (SqliteLedgerStore)ledger.Engine.Store;
        // 2 is FULL: the journal's WAL, where every batch is committed before it is answered, is synced at every commit (rule 3).
        Assert.Equal(2, await store.SynchronousModeAsync());
        foreach (var path in (string[])[store.JournalPath, store.DatabasePath])
        {
            using var connection = SqliteFile.Open(path);
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA journal_mode";
            Assert.Equal("wal", (string)command.ExecuteScalar()!);
        }
    }
}
