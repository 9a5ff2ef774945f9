using Npgsql;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Postgres;
using Tally.Ledger.Tests.Contract;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Postgres;

/// <summary>
/// What only a shared store must guarantee: several nodes (engines, each with its own store and writer)
/// on one database never overdraw, charge a key once, settle a hold once, renew a period once, and
/// migrate safely when they start together. Every scenario ends with the verify pass.
/// </summary>
[RequiresPostgres]
[Collection(PostgresCollection.Name)]
public sealed class PostgresNodesTests(PostgresStoreFactory factory)
{
    [Fact]
    public async Task SixtyFourCallersOverTwoNodesSpendExactlyTheFiveHundredCredits()
    {
        const int callers = 64;
        const int attemptsPerCaller = 10;
        await using var nodes = await Nodes.StartAsync(factory, 2);
        var organization = await nodes.OrganizationAsync(500);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, callers).Select(caller => Task.Run(async () =>
        {
            var node = nodes[caller % 2];
            var results = new List<Outcome<ConsumptionReceipt>>();
            for (var attempt = 0; attempt < attemptsPerCaller; attempt++)
            {
                results.Add(await node.ConsumeAsync(new ConsumeRequest(organization, 1, $"caller-{caller}-{attempt}")));
            }
            return results;
        })));

        var all = outcomes.SelectMany(results => results).ToList();
        Assert.Equal(500, all.Count(outcome => outcome.Succeeded));
        Assert.Equal(callers * attemptsPerCaller - 500, all.Count(outcome => outcome.Error?.Code == ErrorCode.InsufficientCredits));
        foreach (var node in nodes.All)
        {
            var balance = Value(await node.GetBalanceAsync(organization));
            Assert.Equal((500L, 500L, 0L), (balance.Total, balance.Used, balance.Remaining));
        }
    }

    /// <summary>
    /// Both nodes lock the organization's row before looking the key up, so one commits first and the other,
    /// once it has the lock, finds the key committed: exactly one fresh success and one replay of it, never
    /// two charges and never a failure.
    /// </summary>
    [Fact]
    public async Task TheSameKeySentToTwoNodesAtOnceChargesOnceAndReplaysOnce()
    {
        const int rounds = 40;
        await using var nodes = await Nodes.StartAsync(factory, 2);
        var organization = await nodes.OrganizationAsync(1_000);

        for (var round = 0; round < rounds; round++)
        {
            var key = $"message-{round}";
            var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var sent = nodes.All.Select(node => Task.Run(async () =>
            {
                await start.Task;
                return await node.ConsumeAsync(new ConsumeRequest(organization, 3, key));
            })).ToList();
            start.SetResult();
            var outcomes = await Task.WhenAll(sent);

            Assert.All(outcomes, outcome => Assert.True(outcome.Succeeded, $"{outcome.Error?.Code}: {outcome.Error?.Message}"));
            Assert.Equal(1, outcomes.Count(outcome => !outcome.Replayed));
            Assert.Equal(1, outcomes.Count(outcome => outcome.Replayed));
            Assert.Equal(outcomes[0].Value!.Id, outcomes[1].Value!.Id);
        }
        var balance = Value(await nodes[1].GetBalanceAsync(organization));
        Assert.Equal((3L * rounds, 1_000L - 3 * rounds), (balance.Used, balance.Remaining));
        Assert.Equal(rounds, await nodes.CountAsync("SELECT COUNT(*) FROM consumptions"));
    }

    [Fact]
    public async Task AHoldCapturedOnOneNodeAndReleasedOnTheOtherAtOnceIsSettledOnce()
    {
        await using var nodes = await Nodes.StartAsync(factory, 2);
        var organization = await nodes.OrganizationAsync(100);
        var hold = Value(await nodes[0].HoldAsync(new HoldRequest(organization, 10, "hold")));

        var capture = Task.Run(() => nodes[0].CaptureAsync(organization, hold.Id, 4, "capture"));
        var release = Task.Run(() => nodes[1].ReleaseAsync(organization, hold.Id, "release"));
        var (captured, released) = (await capture, await release);

        Assert.True(captured.Succeeded ^ released.Succeeded, "exactly one settlement must succeed");
        var loser = captured.Succeeded ? released.Error : captured.Error;
        Assert.Equal(ErrorCode.HoldAlreadySettled, loser?.Code);
        var balance = Value(await nodes[1].GetBalanceAsync(organization));
        Assert.Equal(captured.Succeeded ? (4L, 96L) : (0L, 100L), (balance.Used, balance.Remaining));
        Assert.Equal(0, balance.Held);
    }

    [Fact]
    public async Task EveryNodeSweepingAfterAPeriodBoundaryIssuesOneAllowance()
    {
        var time = new ManualTime();
        await using var nodes = await Nodes.StartAsync(factory, 2, time);
        var organization = await nodes.OrganizationAsync(100, PeriodKind.Day);
        Value(await nodes[0].ConsumeAsync(new ConsumeRequest(organization, 30, "yesterday")));
        time.Advance(TimeSpan.FromDays(1));

        var due = await nodes[1].Store.FindOrganizationsDueAsync(time.GetUtcNow(), 10, CancellationToken.None);
        Assert.Equal([organization], due);
        var sweeps = await Task.WhenAll(nodes.All.SelectMany(node => Enumerable.Range(0, 4).Select(_ => Task.Run(() => node.AdvanceAsync(organization)))));

        Assert.All(sweeps, sweep => Assert.True(sweep.Succeeded));
        var balance = Value(await nodes[0].GetBalanceAsync(organization));
        Assert.Equal((0L, 100L), (balance.Used, balance.Remaining));
        Assert.Equal(2, await nodes.CountAsync("SELECT COUNT(*) FROM grants WHERE source = 'allowance'"));
        Assert.Empty(await nodes[0].Store.FindOrganizationsDueAsync(time.GetUtcNow(), 10, CancellationToken.None));
    }

    [Fact]
    public async Task ABalanceReadOnOneNodeShowsWhatTheOtherJustCommitted()
    {
        await using var nodes = await Nodes.StartAsync(factory, 2);
        var organization = await nodes.OrganizationAsync(50);
        for (var spent = 1; spent <= 5; spent++)
        {
            var writer = nodes[spent % 2];
            var reader = nodes[(spent + 1) % 2];
            Value(await writer.ConsumeAsync(new ConsumeRequest(organization, 1, $"read-{spent}")));
            Assert.Equal(50 - spent, Value(await reader.GetBalanceAsync(organization)).Remaining);
        }
    }

    [Fact]
    public async Task NodesStartingTogetherMigrateOnceAndStartingAgainChangesNothing()
    {
        var name = Guid.NewGuid().ToString("N");
        var stores = new List<ILedgerStore> { factory.CreateEmpty(name) };
        stores.AddRange(Enumerable.Range(0, 3).Select(_ => factory.Reopen(name)));
        try
        {
            await Task.WhenAll(stores.Select(store => Task.Run(() => store.InitializeAsync(CancellationToken.None))));
            await stores[0].InitializeAsync(CancellationToken.None);

            await using var connection = new NpgsqlConnection(factory.ConnectionString(name));
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT version FROM schema_migrations ORDER BY version", connection);
            var versions = new List<long>();
            await using (var reader = await command.ExecuteReaderAsync())
            {
                while (await reader.ReadAsync()) versions.Add(reader.GetInt64(0));
            }
            Assert.Equal(Schema.Migrations.Select(migration => (long)migration.Version), versions);
        }
        finally
        {
            foreach (var store in stores) await store.DisposeAsync();
        }
        await using var nodes = await Nodes.ReopenAsync(factory, name, 1);
        var organization = await nodes.OrganizationAsync(5);
        Assert.Equal(4, Value(await nodes[0].ConsumeAsync(new ConsumeRequest(organization, 1, "after-migrations"))).Remaining);
    }

    [Fact]
    public async Task SynchronousCommitIsOnInsideEveryBatchEvenWhenTheDatabaseDefaultIsOff()
    {
        var name = Guid.NewGuid().ToString("N");
        await using var store = (PostgresLedgerStore)factory.Create(name);
        await using (var connection = new NpgsqlConnection(factory.ConnectionString(name)))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"ALTER DATABASE \"{connection.Database}\" SET synchronous_commit = off", connection);
            await command.ExecuteNonQueryAsync();
        }
        await store.InitializeAsync(CancellationToken.None);

        Assert.Equal("on", await store.SettingInBatchAsync("synchronous_commit", CancellationToken.None));
        Assert.Equal("10s", await store.SettingInBatchAsync("lock_timeout", CancellationToken.None));
    }

    [Fact]
    public async Task ANodeWhoseIdleConnectionsWereTerminatedAppliesItsNextBatchOnANewConnectionOnce()
    {
        await using var nodes = await Nodes.StartAsync(factory, 1);
        var organization = await nodes.OrganizationAsync(10);
        // pg_terminate_backend: each session ends with admin_shutdown, as in a database restart; the node learns it
        // only when it next uses the connection.
        await nodes.TerminateConnectionsAsync();

        var first = await nodes[0].ConsumeAsync(new ConsumeRequest(organization, 2, "after-termination"));
        Assert.True(first.Succeeded && !first.Replayed, $"{first.Error?.Code}: {first.Error?.Message}");
        Assert.Equal(8, first.Value!.Remaining);
        var again = await nodes[0].ConsumeAsync(new ConsumeRequest(organization, 2, "after-termination"));
        Assert.True(again.Succeeded && again.Replayed);
        Assert.Equal(8, (await nodes[0].GetBalanceAsync(organization)).Value!.Remaining);
    }

    /// <summary>Several engines, each with its own store, on one database: what several `tally serve` processes are.</summary>
    private sealed class Nodes : IAsyncDisposable
    {
        private readonly PostgresStoreFactory factory;
        private readonly string name;
        private readonly List<LedgerEngine> engines;

        private Nodes(PostgresStoreFactory factory, string name, List<LedgerEngine> engines)
        {
            this.factory = factory;
            this.name = name;
            this.engines = engines;
        }

        public LedgerEngine this[int index] => engines[index];
        public IReadOnlyList<LedgerEngine> All => engines;

        public static Task<Nodes> StartAsync(PostgresStoreFactory factory, int count, ManualTime? time = null)
        {
            var name = Guid.NewGuid().ToString("N");
            return StartAsync(factory, name, [factory.CreateEmpty(name), .. Enumerable.Range(1, count - 1).Select(_ => factory.Reopen(name))], time);
        }

        public static Task<Nodes> ReopenAsync(PostgresStoreFactory factory, string name, int count) =>
            StartAsync(factory, name, [.. Enumerable.Range(0, count).Select(_ => factory.Reopen(name))], null);

        private static async Task<Nodes> StartAsync(PostgresStoreFactory factory, string name, List<ILedgerStore> stores, ManualTime? time)
        {
            time ??= new ManualTime();
            var engines = stores.ConvertAll(store => new LedgerEngine(store, time));
            // The nodes start together, as after a deployment: their migrations race and must not collide.
            await Task.WhenAll(engines.Select(engine => engine.StartAsync()));
            return new Nodes(factory, name, engines);
        }

        public async Task<string> OrganizationAsync(long creditsPerPeriod, PeriodKind period = PeriodKind.Month)
        {
            var organization = Value(await engines[0].CreateOrganizationAsync("Acme"));
            Value(await engines[0].PutSubscriptionAsync(organization.Id,
                new SubscriptionRequest("pro", creditsPerPeriod, period, engines[0].Time.GetUtcNow())));
            return organization.Id;
        }

        public async Task<long> CountAsync(string sql)
        {
            await using var connection = new NpgsqlConnection(factory.ConnectionString(name));
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            return (long)(await command.ExecuteScalarAsync())!;
        }

        /// <summary>Cuts every connection the nodes hold, as a database restart or a network failure would.</summary>
        public async Task TerminateConnectionsAsync()
        {
            await using var connection = new NpgsqlConnection(factory.ConnectionString(name));
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                connection);
            Assert.True((long)(await command.ExecuteScalarAsync())! > 0);
        }

        public async ValueTask DisposeAsync()
        {
            var report = await engines[0].Store.VerifyAsync(CancellationToken.None);
            foreach (var engine in engines) await engine.DisposeAsync();
            Assert.True(report.Clean, "verify found: " + string.Join("; ", report.Differences));
        }
    }
}
