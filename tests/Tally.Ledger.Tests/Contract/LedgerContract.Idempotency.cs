using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 2: exactly once, through idempotency keys.</summary>
public abstract partial class LedgerContract
{
    [Fact]
    public async Task AnOrganizationCreatedWithAKeyIsCreatedOnceHoweverOftenTheCreationIsRetried()
    {
        await using var ledger = await StartAsync();
        var first = Value(await ledger.Engine.CreateOrganizationAsync("Acme", "acme-1", "create-acme"));
        var retries = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => ledger.Engine.CreateOrganizationAsync("Acme", "acme-1", "create-acme")));
        Assert.All(retries, retry => Assert.True(retry.Replayed && retry.Value == first, "a retry answers the first creation"));
        Refused(await ledger.Engine.CreateOrganizationAsync("Acme Ltd", "acme-1", "create-acme"), ErrorCode.IdempotencyConflict);
        Refused(await ledger.Engine.CreateOrganizationAsync("Acme", "acme-1", " "), ErrorCode.ValidationFailed);
        // Without a key, each creation is a new organization, as before.
        Assert.NotEqual(first.Id, Value(await ledger.Engine.CreateOrganizationAsync("Acme", "acme-1")).Id);

        await ledger.RestartAsync();
        var afterRestart = await ledger.Engine.CreateOrganizationAsync("Acme", "acme-1", "create-acme");
        Assert.True(afterRestart.Replayed);
        Assert.Equal(first, afterRestart.Value);
        Assert.Equal(2, (await ledger.Engine.Store.ListOrganizationsAsync(null, 10, "acme-1", CancellationToken.None)).Items.Count);
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task RepeatingAConsumptionWithTheSameKeyReplaysTheFirstResultAndChargesOnce()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var first = await ledger.ConsumeAsync(organization, 3, "message-1");
        Value(await ledger.ConsumeAsync(organization, 2));
        var again = await ledger.ConsumeAsync(organization, 3, "message-1");
        Assert.False(first.Replayed);
        Assert.True(again.Replayed);
        Assert.Equal(Value(first), Value(again));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((5L, 5L), (balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task ReusingAKeyWithOtherParametersIsAnIdempotencyConflict()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        Value(await ledger.Engine.ConsumeAsync(new ConsumeRequest(organization, 1, "k", "assistant", "user-1",
            new Dictionary<string, string> { ["model"] = "small" })));
        Refused(await ledger.ConsumeAsync(organization, 2, "k"), ErrorCode.IdempotencyConflict);
        Refused(await ledger.Engine.ConsumeAsync(new ConsumeRequest(organization, 1, "k", "assistant", "user-2",
            new Dictionary<string, string> { ["model"] = "small" })), ErrorCode.IdempotencyConflict);
        Refused(await ledger.Engine.ConsumeAsync(new ConsumeRequest(organization, 1, "k", "assistant", "user-1",
            new Dictionary<string, string> { ["model"] = "large" })), ErrorCode.IdempotencyConflict);
        Refused(await ledger.HoldAsync(organization, 1, "k"), ErrorCode.IdempotencyConflict);
        Refused(await ledger.GrantAsync(organization, 1, "k"), ErrorCode.IdempotencyConflict);
        var replay = await ledger.Engine.ConsumeAsync(new ConsumeRequest(organization, 1, "k", "assistant", "user-1",
            new Dictionary<string, string> { ["model"] = "small" }));
        Assert.True(replay.Replayed);
        Assert.Equal(9, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task AConsumptionReplaysAfterARestartWithTheSameResult()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var first = Value(await ledger.ConsumeAsync(organization, 4, "before-restart"));
        await ledger.RestartAsync();
        var again = await ledger.ConsumeAsync(organization, 4, "before-restart");
        Assert.True(again.Replayed);
        Assert.Equal(first, Value(again));
        Refused(await ledger.ConsumeAsync(organization, 5, "before-restart"), ErrorCode.IdempotencyConflict);
        Assert.Equal(6, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task ARefusalForLackOfCreditsIsNotRememberedSoARetryAfterATopUpSucceeds()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(2);
        Refused(await ledger.ConsumeAsync(organization, 5, "retry-me"), ErrorCode.InsufficientCredits);
        Refused(await ledger.ConsumeAsync(organization, 5, "retry-me"), ErrorCode.InsufficientCredits);
        await ledger.TopUpAsync(organization, 10);
        var retried = await ledger.ConsumeAsync(organization, 5, "retry-me");
        Assert.False(retried.Replayed);
        Value(retried);
        Assert.Equal(7, (await ledger.BalanceAsync(organization)).Remaining);
        Assert.True((await ledger.ConsumeAsync(organization, 5, "retry-me")).Replayed);
    }

    [Fact]
    public async Task ARefusedHoldIsNotRememberedEither()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(2);
        Refused(await ledger.HoldAsync(organization, 5, "hold-later"), ErrorCode.InsufficientCredits);
        await ledger.TopUpAsync(organization, 3);
        var hold = await ledger.HoldAsync(organization, 5, "hold-later");
        Assert.False(hold.Replayed);
        Assert.Equal(5, Value(hold).Credits);
    }

    [Fact]
    public async Task AReplayAnswersEvenWhenTheBalanceIsNowExhausted()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(5);
        var first = Value(await ledger.ConsumeAsync(organization, 5, "all-of-it"));
        var again = await ledger.ConsumeAsync(organization, 5, "all-of-it");
        Assert.True(again.Replayed);
        Assert.Equal(first, Value(again));
        Assert.Equal(0, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task TheSameKeySentManyTimesAtOnceIsChargedOnce()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => ledger.ConsumeAsync(organization, 2, "burst")));
        Assert.All(outcomes, outcome => Value(outcome));
        Assert.Single(outcomes, outcome => !outcome.Replayed);
        Assert.Single(outcomes.Select(outcome => outcome.Value!.Id).Distinct());
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((2L, 98L), (balance.Used, balance.Remaining));
    }

    [Fact]
    public async Task ATopUpWithTheSameKeyIsGrantedOnce()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        var first = await ledger.GrantAsync(organization, 50, "invoice-7");
        var again = await ledger.GrantAsync(organization, 50, "invoice-7");
        Assert.True(again.Replayed);
        Assert.Equal(Value(first).Id, Value(again).Id);
        Refused(await ledger.GrantAsync(organization, 60, "invoice-7"), ErrorCode.IdempotencyConflict);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(50, balance.Remaining);
        Assert.Single(balance.Grants);
    }

    [Fact]
    public async Task IdempotencyKeysBelongToOneOrganization()
    {
        await using var ledger = await StartAsync();
        var first = await ledger.OrganizationAsync(10);
        var second = await ledger.OrganizationAsync(10);
        var a = await ledger.ConsumeAsync(first, 1, "shared-key");
        var b = await ledger.ConsumeAsync(second, 3, "shared-key");
        Assert.False(a.Replayed);
        Assert.False(b.Replayed);
        Assert.Equal(9, (await ledger.BalanceAsync(first)).Remaining);
        Assert.Equal(7, (await ledger.BalanceAsync(second)).Remaining);
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("tab\tinside")]
    [InlineData("non-ascii-é")]
    public async Task AnIdempotencyKeyThatIsNotPrintableAsciiIsRefusedAsInvalid(string key)
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var error = Refused(await ledger.ConsumeAsync(organization, 1, key), ErrorCode.ValidationFailed);
        Assert.Equal("idempotencyKey", error.Field);
        Assert.Equal(10, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task AnIdempotencyKeyOfAtMost128CharactersIsAcceptedAndLongerIsRefused()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        Value(await ledger.ConsumeAsync(organization, 1, new string('k', Limits.IdempotencyKeyLengthMax)));
        Refused(await ledger.ConsumeAsync(organization, 1, new string('k', Limits.IdempotencyKeyLengthMax + 1)), ErrorCode.ValidationFailed);
        Assert.Equal(9, (await ledger.BalanceAsync(organization)).Remaining);
    }
}
