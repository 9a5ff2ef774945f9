using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>
/// The ledger rules of SPEC §2, written once and run against every store: each store has a subclass
/// that supplies its factory. Every test ends with the verify pass (the harness runs it on dispose).
/// The rules are split over partial files by topic; this one holds rule 1 (no overdraft) and input limits.
/// </summary>
public abstract partial class LedgerContract(IStoreFactory factory)
{
    protected IStoreFactory Factory => factory;

    protected Task<LedgerHarness> StartAsync(ManualTime? time = null) => LedgerHarness.StartAsync(factory, time);

    [Fact]
    public async Task ConsumingExactlyTheRemainingCreditsSucceedsAndLeavesZero()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var receipt = Value(await ledger.ConsumeAsync(organization, 10));
        Assert.Equal(0, receipt.Remaining);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((10L, 10L, 0L), (balance.Total, balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task ConsumingMoreThanRemainingIsRefusedAndChargesNothing()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var outcome = await ledger.ConsumeAsync(organization, 11);
        Assert.Equal(ErrorCode.InsufficientCredits, outcome.Error?.Code);
        Assert.Equal(10, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task ConsumingFromAnExhaustedBalanceIsRefusedWithInsufficientCredits()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(3);
        for (var i = 0; i < 3; i++) Value(await ledger.ConsumeAsync(organization));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((3L, 0L), (balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task AConsumptionLargerThanAllGrantsTogetherTakesNothingFromAnyOfThem()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var topUp = await ledger.TopUpAsync(organization, 4);
        Refused(await ledger.ConsumeAsync(organization, 15), ErrorCode.InsufficientCredits);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(14, balance.Remaining);
        Assert.Equal(4, await ledger.GrantRemainingAsync(organization, topUp));
        Assert.Equal(14, await ledger.LedgerRemainingAsync(organization));
    }

    [Fact]
    public async Task HeldCreditsCannotBeConsumed()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        Value(await ledger.HoldAsync(organization, 8));
        Refused(await ledger.ConsumeAsync(organization, 3), ErrorCode.InsufficientCredits);
        Value(await ledger.ConsumeAsync(organization, 2));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 8L), (balance.Remaining, balance.Held));
    }

    [Fact]
    public async Task HoldingMoreThanRemainingIsRefusedWithInsufficientCredits()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        Value(await ledger.ConsumeAsync(organization, 4));
        Refused(await ledger.HoldAsync(organization, 7), ErrorCode.InsufficientCredits);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((6L, 0L), (balance.Remaining, balance.Held));
    }

    [Fact]
    public async Task ATopUpPastItsExpiryIsNoLongerSpendable()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        await ledger.TopUpAsync(organization, 5, expiresAt: ledger.Time.GetUtcNow().AddDays(2));
        Value(await ledger.ConsumeAsync(organization, 2));
        ledger.Time.Advance(TimeSpan.FromDays(2));
        Assert.Equal(0, (await ledger.BalanceAsync(organization)).Remaining);
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        Assert.Equal(0, await ledger.LedgerRemainingAsync(organization));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(Limits.OperationCreditsMax + 1)]
    public async Task ConsumingCreditsOutsideTheOperationLimitsIsRefusedAsInvalid(long credits)
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var error = Refused(await ledger.ConsumeAsync(organization, credits), ErrorCode.ValidationFailed);
        Assert.Equal("credits", error.Field);
        Assert.Equal(100, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    [InlineData(Limits.GrantCreditsMax + 1)]
    public async Task GrantingCreditsOutsideTheGrantLimitsIsRefusedAsInvalid(long credits)
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var error = Refused(await ledger.GrantAsync(organization, credits), ErrorCode.ValidationFailed);
        Assert.Equal("credits", error.Field);
        Assert.Equal(10, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task AGrantThatWouldAlreadyHaveExpiredIsRefusedAsInvalid()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        var error = Refused(await ledger.GrantAsync(organization, 5, expiresAt: ledger.Time.GetUtcNow()), ErrorCode.ValidationFailed);
        Assert.Equal("expiresAt", error.Field);
        Assert.Equal(0, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task ABadRequestInABatchDoesNotFailTheOthersInIt()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var good = Enumerable.Range(0, 20).Select(_ => ledger.ConsumeAsync(organization)).ToList();
        var bad = ledger.ConsumeAsync(organization, -3);
        var badGrant = ledger.GrantAsync(organization, -7);
        var more = Enumerable.Range(0, 20).Select(_ => ledger.ConsumeAsync(organization)).ToList();
        foreach (var outcome in await Task.WhenAll(good.Concat(more))) Value(outcome);
        Refused(await bad, ErrorCode.ValidationFailed);
        Refused(await badGrant, ErrorCode.ValidationFailed);
        Assert.Equal(60, (await ledger.BalanceAsync(organization)).Remaining);
    }
}

public sealed class SqliteLedgerContract(SqliteStoreFactory factory) : LedgerContract(factory), IClassFixture<SqliteStoreFactory>;
