using Microsoft.Extensions.Logging.Abstractions;
using Tally.Hosting;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Sqlite;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>Rule 6's background sweep renews organizations nobody touched, however many share a boundary.</summary>
public sealed class RenewalSweepTests : IDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "tally-sweep-tests-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task OneSweepRenewsEveryDueOrganizationNotOnlyTheFirstPageOfThem()
    {
        var clock = new ManualClock(new DateTimeOffset(2026, 1, 15, 12, 0, 0, TimeSpan.Zero));
        await using var engine = new LedgerEngine(new SqliteLedgerStore(folder), clock);
        await engine.StartAsync();
        const int PageMax = RelationalStore.DueOrganizationsPageMax;
        await Task.WhenAll(Enumerable.Range(0, PageMax + 5).Select(async index =>
        {
            var id = (await engine.CreateOrganizationAsync("daily " + index)).Value!.Id;
            Assert.Null((await engine.PutSubscriptionAsync(id, new SubscriptionRequest("daily", 10, PeriodKind.Day))).Error);
        }));
        clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
        Assert.Equal(PageMax, (await engine.Store.FindOrganizationsDueAsync(clock.GetUtcNow(), PageMax, CancellationToken.None)).Count);

        await new RenewalSweep(engine, new TallyOptions(), NullLogger<RenewalSweep>.Instance).SweepAsync(CancellationToken.None);

        Assert.Empty(await engine.Store.FindOrganizationsDueAsync(clock.GetUtcNow(), PageMax, CancellationToken.None));
        Assert.True((await engine.Store.VerifyAsync(CancellationToken.None)).Clean);
    }

    public void Dispose()
    {
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }
}
