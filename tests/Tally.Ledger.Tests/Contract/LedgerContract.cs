using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>
/// The ledger rules of SPEC §2, written once and run against every store: each store has a subclass
/// that supplies its factory. Every test ends with the verify pass (the harness runs it on dispose).
/// </summary>
public abstract class LedgerContract(IStoreFactory factory)
{
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
}

public sealed class SqliteLedgerContract(SqliteStoreFactory factory) : LedgerContract(factory), IClassFixture<SqliteStoreFactory>;
