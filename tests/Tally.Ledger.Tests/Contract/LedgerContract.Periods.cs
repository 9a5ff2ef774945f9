using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 6: periods, renewals and rollover. The harness clock starts on 2026-01-15 12:00 UTC, the anchor.</summary>
public abstract partial class LedgerContract
{
    private static readonly DateTimeOffset FirstBoundary = new(2026, 2, 15, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task ABalanceReadAfterAPeriodBoundaryShowsTheNewPeriodsAllowance()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        Value(await ledger.ConsumeAsync(organization, 30));
        ledger.Time.Set(FirstBoundary.AddMinutes(-1));
        Assert.Equal((30L, 70L), await UsedAndRemainingAsync(ledger, organization));
        ledger.Time.Set(FirstBoundary);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 100L, 100L), (balance.Used, balance.Remaining, balance.Total));
        Assert.Equal(FirstBoundary, balance.Subscription.PeriodStart);
        Assert.Equal(FirstBoundary.AddMonths(1), balance.Subscription.PeriodEnd);
        // The first change after the boundary writes the renewal and is charged to the new period.
        var receipt = Value(await ledger.ConsumeAsync(organization, 5));
        Assert.Equal(95, receipt.Remaining);
        Assert.Equal((5L, 95L), await UsedAndRemainingAsync(ledger, organization));
        Assert.Equal(95, await ledger.LedgerRemainingAsync(organization));
    }

    [Fact]
    public async Task BalanceReadsAfterABoundaryShowTheRenewalsGrantsAsTheWriteThenStoresThem()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100, rolloverMax: 20);
        Value(await ledger.ConsumeAsync(organization, 90));

        // Two reads a minute apart, both before anything writes the renewal (the sweep is not running).
        ledger.Time.Set(FirstBoundary.AddMinutes(1));
        var first = (await ledger.BalanceAsync(organization)).Grants;
        ledger.Time.Set(FirstBoundary.AddMinutes(2));
        var second = (await ledger.BalanceAsync(organization)).Grants;
        ledger.Time.Set(FirstBoundary.AddMinutes(3));
        Value(await ledger.ConsumeAsync(organization, 1));
        await ledger.RestartAsync();
        var stored = (await ledger.BalanceAsync(organization)).Grants;

        Assert.Equal([("allowance", 100L), ("rollover", 10L)], first.Select(grant => (grant.Source, grant.Credits)).Order());
        Assert.Equal(first, second);
        Assert.Equal(first.Select(grant => (grant.Id, grant.Source, grant.Credits, grant.CreatedAt)).Order(),
            stored.Select(grant => (grant.Id, grant.Source, grant.Credits, grant.CreatedAt)).Order());
    }

    [Fact]
    public async Task TheSweepRenewsThePeriodAndTheRenewalIsStored()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        Value(await ledger.ConsumeAsync(organization, 60));
        ledger.Time.Set(FirstBoundary.AddHours(2));
        var due = await ledger.Engine.Store.FindOrganizationsDueAsync(ledger.Time.GetUtcNow(), 10, CancellationToken.None);
        Assert.Contains(organization, due);
        Value(await ledger.Engine.AdvanceAsync(organization));
        Assert.DoesNotContain(organization,
            await ledger.Engine.Store.FindOrganizationsDueAsync(ledger.Time.GetUtcNow(), 10, CancellationToken.None));
        Assert.Equal(100, await ledger.LedgerRemainingAsync(organization));
        await ledger.RestartAsync();
        Assert.Equal((0L, 100L), await UsedAndRemainingAsync(ledger, organization));
    }

    [Fact]
    public async Task RenewalIssuesOneAllowancePerPeriodHoweverOftenItIsTouched()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100, rolloverMax: 20);
        Value(await ledger.ConsumeAsync(organization, 90));
        ledger.Time.Set(FirstBoundary.AddDays(1));
        for (var i = 0; i < 3; i++) await ledger.BalanceAsync(organization);
        var touches = Enumerable.Range(0, 10).Select(_ => ledger.Engine.AdvanceAsync(organization)).ToList();
        var consumption = ledger.ConsumeAsync(organization, 1);
        foreach (var touch in await Task.WhenAll(touches)) Value(touch);
        Value(await consumption);
        await ledger.RestartAsync();
        Value(await ledger.Engine.AdvanceAsync(organization));
        ledger.Time.Advance(TimeSpan.FromDays(1));
        Value(await ledger.Engine.AdvanceAsync(organization));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Single(balance.Grants, grant => grant.Source == "allowance");
        Assert.Single(balance.Grants, grant => grant.Source == "rollover");
        Assert.Equal(10 + 100 - 1, balance.Remaining);
        var grantsIssued = (await ledger.EntriesAsync(organization)).Count(entry => entry.Kind == "grant");
        Assert.Equal(3, grantsIssued);
    }

    [Fact]
    public async Task UnusedCreditsRollOverUpToRolloverMax()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100, rolloverMax: 50);
        Value(await ledger.ConsumeAsync(organization, 20));
        ledger.Time.Set(FirstBoundary);
        Value(await ledger.Engine.AdvanceAsync(organization));
        var balance = await ledger.BalanceAsync(organization);
        var rollover = balance.Grants.Single(grant => grant.Source == "rollover");
        Assert.Equal((50L, 50L), (rollover.Credits, rollover.Remaining));
        Assert.Equal(FirstBoundary.AddMonths(1), rollover.ExpiresAt);
        Assert.Equal((0L, 150L, 150L), (balance.Used, balance.Remaining, balance.Total));
        var entries = await ledger.EntriesAsync(organization);
        Assert.Equal(-50, entries.Single(entry => entry.Kind == "rollover_out").Credits);
        Assert.Equal(-30, entries.Single(entry => entry.Kind == "expire").Credits);
    }

    [Fact]
    public async Task EveryUnusedCreditRollsOverWhenThereAreFewerThanRolloverMax()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100, rolloverMax: 50);
        Value(await ledger.ConsumeAsync(organization, 90));
        ledger.Time.Set(FirstBoundary.AddMinutes(1));
        Assert.Equal((0L, 110L), await UsedAndRemainingAsync(ledger, organization));
        Value(await ledger.ConsumeAsync(organization, 1));
        Assert.Equal(109, await ledger.LedgerRemainingAsync(organization));
    }

    [Fact]
    public async Task RolledOverCreditsBurnBeforeTheNewAllowanceAndDoNotRollAgain()
    {
        await using var ledger = await StartAsync();
        // Several organizations, so that an order decided by chance could not pass every time.
        var organizations = new List<string>();
        for (var i = 0; i < 8; i++) organizations.Add(await ledger.OrganizationAsync(100, rolloverMax: 40));
        foreach (var organization in organizations) Value(await ledger.ConsumeAsync(organization, 70));
        ledger.Time.Set(FirstBoundary);
        foreach (var organization in organizations)
        {
            Value(await ledger.ConsumeAsync(organization, 20));
            var grants = (await ledger.BalanceAsync(organization)).Grants;
            Assert.Equal(10, grants.Single(grant => grant.Source == "rollover").Remaining);
            Assert.Equal(100, grants.Single(grant => grant.Source == "allowance").Remaining);
        }
        ledger.Time.Set(FirstBoundary.AddMonths(1));
        foreach (var organization in organizations)
        {
            var balance = await ledger.BalanceAsync(organization);
            // Only the ended allowance rolls over (capped at 40); the ended rollover's 10 expire.
            Assert.Equal(140, balance.Remaining);
            Assert.Equal(40, balance.Grants.Single(grant => grant.Source == "rollover").Credits);
        }
    }

    [Fact]
    public async Task AfterSeveralSkippedPeriodsAtMostOneFullAllowanceRollsOver()
    {
        await using var ledger = await StartAsync();
        var generous = await ledger.OrganizationAsync(100, rolloverMax: 500);
        var capped = await ledger.OrganizationAsync(100, rolloverMax: 30);
        Value(await ledger.ConsumeAsync(generous, 10));
        Value(await ledger.ConsumeAsync(capped, 10));
        var threeMonthsOn = FirstBoundary.AddMonths(2).AddDays(3);
        ledger.Time.Set(threeMonthsOn);
        var lazily = await ledger.BalanceAsync(generous);
        Assert.Equal(200, lazily.Remaining);
        Assert.Equal(FirstBoundary.AddMonths(2), lazily.Subscription.PeriodStart);
        Value(await ledger.Engine.AdvanceAsync(generous));
        Value(await ledger.Engine.AdvanceAsync(capped));
        Assert.Equal((0L, 200L), await UsedAndRemainingAsync(ledger, generous));
        Assert.Equal((0L, 130L), await UsedAndRemainingAsync(ledger, capped));
        Assert.Equal(200, await ledger.LedgerRemainingAsync(generous));
        Assert.Equal(130, await ledger.LedgerRemainingAsync(capped));
    }

    [Fact]
    public async Task WithoutRolloverTheEndedAllowanceExpiresButTopUpsRemain()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        await ledger.TopUpAsync(organization, 10);
        Value(await ledger.ConsumeAsync(organization, 105));
        ledger.Time.Set(FirstBoundary.AddDays(5));
        Value(await ledger.Engine.AdvanceAsync(organization));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 105L), (balance.Used, balance.Remaining));
        Assert.DoesNotContain(balance.Grants, grant => grant.Source == "rollover");
        Assert.Equal(105, await ledger.LedgerRemainingAsync(organization));
    }

    [Fact]
    public async Task APeriodBoundaryCrossedWhileHoldsAreOpenChargesCapturesToTheNewPeriod()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100, rolloverMax: 100);
        ledger.Time.Set(FirstBoundary.AddHours(-1));
        var captured = Value(await ledger.HoldAsync(organization, 30, ttlSeconds: 7_200));
        var released = Value(await ledger.HoldAsync(organization, 20, ttlSeconds: 7_200));
        var expiring = Value(await ledger.HoldAsync(organization, 10, ttlSeconds: 5_400));
        Assert.Equal(40, (await ledger.BalanceAsync(organization)).Remaining);

        ledger.Time.Set(FirstBoundary.AddMinutes(10));
        var renewed = await ledger.BalanceAsync(organization);
        // Held credits are not unused: only the 40 free credits roll over, and the holds stay open.
        Assert.Equal((0L, 140L, 60L), (renewed.Used, renewed.Remaining, renewed.Held));

        var capture = Value(await ledger.CaptureAsync(organization, captured.Id, 25));
        Assert.Equal(5, capture.Released);
        Value(await ledger.ReleaseAsync(organization, released.Id));
        ledger.Time.Set(FirstBoundary.AddHours(1));
        // Credits released to the ended allowance are forfeited rather than spendable.
        var after = await ledger.BalanceAsync(organization);
        Assert.Equal((25L, 140L, 0L), (after.Used, after.Remaining, after.Held));
        Refused(await ledger.CaptureAsync(organization, expiring.Id, 1), ErrorCode.HoldExpired);
        Value(await ledger.Engine.AdvanceAsync(organization));
        Assert.Equal(140, await ledger.LedgerRemainingAsync(organization));
        Assert.Equal(165, after.Total);
    }

    [Fact]
    public async Task AConsumptionAtTheExactBoundaryInstantBelongsToTheNewPeriod()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        Value(await ledger.ConsumeAsync(organization, 10));
        ledger.Time.Set(FirstBoundary.AddTicks(-TimeSpan.TicksPerMillisecond));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        ledger.Time.Set(FirstBoundary);
        Value(await ledger.ConsumeAsync(organization, 10));
        Assert.Equal((10L, 0L), await UsedAndRemainingAsync(ledger, organization));
    }

    [Fact]
    public async Task MonthlyPeriodsAnchoredOnThe31stEndOnTheLastDayOfShorterMonths()
    {
        var anchor = new DateTimeOffset(2026, 1, 31, 9, 0, 0, TimeSpan.Zero);
        await using var ledger = await StartAsync(new ManualTime(anchor));
        var organization = await ledger.OrganizationAsync(10);
        Assert.Equal(new DateTimeOffset(2026, 2, 28, 9, 0, 0, TimeSpan.Zero), (await ledger.BalanceAsync(organization)).Subscription.PeriodEnd);
        ledger.Time.Set(new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero));
        Value(await ledger.Engine.AdvanceAsync(organization));
        var march = (await ledger.BalanceAsync(organization)).Subscription;
        Assert.Equal(new DateTimeOffset(2026, 2, 28, 9, 0, 0, TimeSpan.Zero), march.PeriodStart);
        Assert.Equal(new DateTimeOffset(2026, 3, 31, 9, 0, 0, TimeSpan.Zero), march.PeriodEnd);
    }

    [Fact]
    public async Task ADailyPlanRenewsEachDayWithItsRollover()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10, rolloverMax: 5, period: PeriodKind.Day);
        var expected = 10L;
        for (var day = 0; day < 6; day++)
        {
            var spend = day % 3 == 0 ? 10 : 2;
            Value(await ledger.ConsumeAsync(organization, spend));
            var unusedAllowance = Math.Max(0, 10 - Math.Max(0, spend - (expected - 10)));
            ledger.Time.Advance(TimeSpan.FromDays(1));
            if (day % 2 == 0) Value(await ledger.Engine.AdvanceAsync(organization));
            expected = 10 + Math.Min(5, unusedAllowance);
            Assert.Equal((0L, expected), await UsedAndRemainingAsync(ledger, organization));
        }
    }

    private static async Task<(long Used, long Remaining)> UsedAndRemainingAsync(LedgerHarness ledger, string organization)
    {
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(balance.Total, balance.Used + balance.Remaining);
        return (balance.Used, balance.Remaining);
    }
}
