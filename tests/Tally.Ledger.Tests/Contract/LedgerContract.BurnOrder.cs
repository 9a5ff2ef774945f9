using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 5: soonest expiry first (never-expiring last), then lower priority, then oldest.</summary>
public abstract partial class LedgerContract
{
    [Fact]
    public async Task CreditsBurnFromTheGrantThatExpiresSoonestFirst()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        var now = ledger.Time.GetUtcNow();
        var late = await ledger.TopUpAsync(organization, 10, expiresAt: now.AddDays(20));
        var soon = await ledger.TopUpAsync(organization, 10, expiresAt: now.AddDays(5));
        Value(await ledger.ConsumeAsync(organization, 4));
        Assert.Equal(6, await ledger.GrantRemainingAsync(organization, soon));
        Assert.Equal(10, await ledger.GrantRemainingAsync(organization, late));
    }

    [Fact]
    public async Task NeverExpiringGrantsBurnLastWhateverTheirPriority()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var forever = await ledger.TopUpAsync(organization, 10, priority: -100);
        Value(await ledger.ConsumeAsync(organization, 12));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(0, balance.Grants.Single(grant => grant.Source == "allowance").Remaining);
        Assert.Equal(8, await ledger.GrantRemainingAsync(organization, forever));
    }

    [Fact]
    public async Task AmongGrantsExpiringTogetherLowerPriorityBurnsFirst()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        var expiresAt = ledger.Time.GetUtcNow().AddDays(10);
        var second = await ledger.TopUpAsync(organization, 10, priority: 5, expiresAt: expiresAt);
        var first = await ledger.TopUpAsync(organization, 10, priority: 1, expiresAt: expiresAt);
        var neverFirst = await ledger.TopUpAsync(organization, 10, priority: 9);
        var neverSecond = await ledger.TopUpAsync(organization, 10, priority: 10);
        Value(await ledger.ConsumeAsync(organization, 15));
        Assert.Equal(0, await ledger.GrantRemainingAsync(organization, first));
        Assert.Equal(5, await ledger.GrantRemainingAsync(organization, second));
        Value(await ledger.ConsumeAsync(organization, 9));
        Assert.Equal(0, await ledger.GrantRemainingAsync(organization, second));
        Assert.Equal(6, await ledger.GrantRemainingAsync(organization, neverFirst));
        Assert.Equal(10, await ledger.GrantRemainingAsync(organization, neverSecond));
    }

    [Fact]
    public async Task AmongOtherwiseEqualGrantsTheOldestBurnsFirst()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        var older = await ledger.TopUpAsync(organization, 10);
        ledger.Time.Advance(TimeSpan.FromSeconds(1));
        var newer = await ledger.TopUpAsync(organization, 10);
        ledger.Time.Advance(TimeSpan.FromSeconds(1));
        Value(await ledger.ConsumeAsync(organization, 13));
        Assert.Equal(0, await ledger.GrantRemainingAsync(organization, older));
        Assert.Equal(7, await ledger.GrantRemainingAsync(organization, newer));
        // The order holds after a restart, when the grants are read back from the store.
        await ledger.RestartAsync();
        Value(await ledger.ConsumeAsync(organization, 2));
        Assert.Equal(5, await ledger.GrantRemainingAsync(organization, newer));
    }

    [Fact]
    public async Task TheAllowanceBurnsBeforeANeverExpiringTopUpAndTheLedgerNamesEachGrant()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(5);
        var topUp = await ledger.TopUpAsync(organization, 5);
        var receipt = Value(await ledger.ConsumeAsync(organization, 7));
        var allowance = (await ledger.BalanceAsync(organization)).Grants.Single(grant => grant.Source == "allowance").Id;
        var entries = (await ledger.EntriesAsync(organization)).Where(entry => entry.ReferenceId == receipt.Id).ToList();
        Assert.Equal(new[] { (allowance, -5L), (topUp, -2L) }.Order(), entries.Select(entry => (entry.GrantId!, entry.Credits)).Order());
        Assert.All(entries, entry => Assert.Equal("consume", entry.Kind));
    }
}
