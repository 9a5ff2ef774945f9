using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 5 (refunds go back to their grants), rule 7 (unlimited) and rule 9 (usage in the period).</summary>
public abstract partial class LedgerContract
{
    [Fact]
    public async Task ARefundReturnsCreditsToTheGrantsTheyCameFromLastTakenFirst()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var topUp = await ledger.TopUpAsync(organization, 10);
        var consumption = Value(await ledger.ConsumeAsync(organization, 15));
        var refund = Value(await ledger.RefundAsync(organization, consumption.Id, 7));
        Assert.Equal((7L, 7L, 12L), (refund.Credits, refund.RefundedTotal, refund.Remaining));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(2, balance.Grants.Single(grant => grant.Source == "allowance").Remaining);
        Assert.Equal(10, await ledger.GrantRemainingAsync(organization, topUp));
        Assert.Equal((8L, 12L), (balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task PartialRefundsAddUpToAtMostTheConsumption()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 10));
        Assert.Equal(3, Value(await ledger.RefundAsync(organization, consumption.Id, 3)).RefundedTotal);
        Assert.Equal(6, Value(await ledger.RefundAsync(organization, consumption.Id, 3)).RefundedTotal);
        var error = Refused(await ledger.RefundAsync(organization, consumption.Id, 5), ErrorCode.ValidationFailed);
        Assert.Equal("credits", error.Field);
        Assert.Equal(10, Value(await ledger.RefundAsync(organization, consumption.Id, 4)).RefundedTotal);
        Refused(await ledger.RefundAsync(organization, consumption.Id, 1), ErrorCode.ValidationFailed);
        Refused(await ledger.RefundAsync(organization, consumption.Id), ErrorCode.ValidationFailed);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 100L), (balance.Used, balance.Remaining));
    }

    [Theory]
    [InlineData(6)]
    [InlineData(0)]
    [InlineData(-2)]
    public async Task RefundingMoreThanConsumedOrNothingIsRefused(long credits)
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 5));
        Refused(await ledger.RefundAsync(organization, consumption.Id, credits), ErrorCode.ValidationFailed);
        Assert.Equal((5L, 95L), ((await ledger.BalanceAsync(organization)).Used, (await ledger.BalanceAsync(organization)).Remaining));
    }

    [Fact]
    public async Task ARefundWithoutCreditsReturnsWhatIsLeftToRefund()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 9));
        Value(await ledger.RefundAsync(organization, consumption.Id, 2));
        var rest = Value(await ledger.RefundAsync(organization, consumption.Id));
        Assert.Equal((7L, 9L), (rest.Credits, rest.RefundedTotal));
        Assert.Equal(100, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task CreditsRefundedToAnExpiredGrantAreNotSpendable()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        await ledger.TopUpAsync(organization, 10, expiresAt: ledger.Time.GetUtcNow().AddDays(1));
        var consumption = Value(await ledger.ConsumeAsync(organization, 10));
        ledger.Time.Advance(TimeSpan.FromDays(2));
        var refund = Value(await ledger.RefundAsync(organization, consumption.Id));
        Assert.Equal((10L, 0L), (refund.Credits, refund.Remaining));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 0L), (balance.Used, balance.Remaining));
        Assert.Equal(0, await ledger.LedgerRemainingAsync(organization));
        Assert.Contains(await ledger.EntriesAsync(organization), entry => entry.Kind == "forfeit" && entry.Credits == -10);
    }

    [Fact]
    public async Task RefundingALastPeriodConsumptionLeavesThisPeriodsUsageAlone()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        await ledger.TopUpAsync(organization, 10);
        var consumption = Value(await ledger.ConsumeAsync(organization, 105));
        ledger.Time.Set(FirstBoundary.AddDays(1));
        Value(await ledger.ConsumeAsync(organization, 3));
        var refund = Value(await ledger.RefundAsync(organization, consumption.Id));
        // The top-up's 5 come back and can be spent; the ended allowance's 100 are forfeited.
        Assert.Equal(107, refund.Remaining);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((3L, 107L), (balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task RefundingACapturedHoldReturnsCreditsToTheHoldsGrants()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var topUp = await ledger.TopUpAsync(organization, 10);
        var hold = Value(await ledger.HoldAsync(organization, 16));
        var capture = Value(await ledger.CaptureAsync(organization, hold.Id, 14));
        Assert.Equal(6, await ledger.GrantRemainingAsync(organization, topUp));
        var refund = Value(await ledger.RefundAsync(organization, capture.ConsumptionId, 5));
        Assert.Equal(11, refund.Remaining);
        Assert.Equal(10, await ledger.GrantRemainingAsync(organization, topUp));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(1, balance.Grants.Single(grant => grant.Source == "allowance").Remaining);
        Assert.Equal((9L, 11L), (balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task ARefundReplaysWithTheSameKeyAndConflictsWithOtherCredits()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 10));
        var refund = Value(await ledger.RefundAsync(organization, consumption.Id, 4, "refund-1"));
        var again = await ledger.RefundAsync(organization, consumption.Id, 4, "refund-1");
        Assert.True(again.Replayed);
        Assert.Equal(refund, Value(again));
        Refused(await ledger.RefundAsync(organization, consumption.Id, 5, "refund-1"), ErrorCode.IdempotencyConflict);
        await ledger.RestartAsync();
        Assert.True((await ledger.RefundAsync(organization, consumption.Id, 4, "refund-1")).Replayed);
        Assert.Equal((6L, 94L), ((await ledger.BalanceAsync(organization)).Used, (await ledger.BalanceAsync(organization)).Remaining));
    }

    [Fact]
    public async Task RefundingAnotherOrganizationsConsumptionIsNotFound()
    {
        await using var ledger = await StartAsync();
        var owner = await ledger.OrganizationAsync(100);
        var stranger = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(owner, 10));
        Refused(await ledger.RefundAsync(stranger, consumption.Id, 5), ErrorCode.NotFound);
        Refused(await ledger.RefundAsync(owner, Guid.NewGuid().ToString(), 5), ErrorCode.NotFound);
        Assert.Equal(100, (await ledger.BalanceAsync(stranger)).Remaining);
        Assert.Equal(90, (await ledger.BalanceAsync(owner)).Remaining);
    }

    [Fact]
    public async Task AnUnlimitedPlanNeverRefusesAndReportsMinusOne()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(null);
        for (var i = 0; i < 5; i++)
        {
            var receipt = Value(await ledger.ConsumeAsync(organization, Limits.OperationCreditsMax));
            Assert.Equal(-1, receipt.Remaining);
        }
        var balance = await ledger.BalanceAsync(organization);
        Assert.True(balance.Unlimited);
        Assert.Equal((-1L, 5 * Limits.OperationCreditsMax, -1L), (balance.Total, balance.Used, balance.Remaining));
        Assert.Equal(5, (await ledger.EntriesAsync(organization)).Count(entry => entry.Kind == "consume"));
    }

    [Fact]
    public async Task AnUnlimitedPlanRecordsHoldsCapturesAndRefundsInItsUsage()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(null);
        var hold = Value(await ledger.HoldAsync(organization, 50));
        Assert.Equal(-1, hold.Remaining);
        var capture = Value(await ledger.CaptureAsync(organization, hold.Id, 20));
        Assert.Equal(-1, capture.Remaining);
        var consumption = Value(await ledger.ConsumeAsync(organization, 7));
        Value(await ledger.RefundAsync(organization, consumption.Id, 2));
        Value(await ledger.RefundAsync(organization, capture.ConsumptionId, 20));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((-1L, 5L, -1L), (balance.Total, balance.Used, balance.Remaining));
        ledger.Time.Set(FirstBoundary);
        var renewed = await ledger.BalanceAsync(organization);
        Assert.Equal((-1L, 0L, -1L), (renewed.Total, renewed.Used, renewed.Remaining));
        Assert.Empty(renewed.Grants);
    }

    [Fact]
    public async Task TotalIsUsedPlusRemainingAfterEveryKindOfChange()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        async Task<BalanceView> Check()
        {
            var balance = await ledger.BalanceAsync(organization);
            Assert.Equal(balance.Total, balance.Used + balance.Remaining);
            return balance;
        }
        var consumption = Value(await ledger.ConsumeAsync(organization, 10));
        Assert.Equal((100L, 10L), ((await Check()).Total, (await Check()).Used));
        var hold = Value(await ledger.HoldAsync(organization, 20));
        Assert.Equal((10L, 70L, 20L), ((await Check()).Used, (await Check()).Remaining, (await Check()).Held));
        Value(await ledger.CaptureAsync(organization, hold.Id, 15));
        Assert.Equal((25L, 75L), ((await Check()).Used, (await Check()).Remaining));
        Value(await ledger.RefundAsync(organization, consumption.Id, 4));
        Assert.Equal((21L, 79L), ((await Check()).Used, (await Check()).Remaining));
        await ledger.TopUpAsync(organization, 50);
        Assert.Equal((150L, 21L, 129L), ((await Check()).Total, (await Check()).Used, (await Check()).Remaining));
    }
}
