using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 8: holds are placed, captured in part or whole, released, and expire on their own.</summary>
public abstract partial class LedgerContract
{
    [Fact]
    public async Task CapturingPartOfAHoldChargesThatPartAndReleasesTheRest()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 30));
        Assert.Equal(70, hold.Remaining);
        Assert.Equal(ledger.Time.GetUtcNow().AddSeconds(Limits.HoldTtlSecondsDefault), hold.ExpiresAt);
        var held = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 70L, 30L), (held.Used, held.Remaining, held.Held));
        var capture = Value(await ledger.CaptureAsync(organization, hold.Id, 12));
        Assert.Equal((12L, 18L, 88L), (capture.Captured, capture.Released, capture.Remaining));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((12L, 88L, 0L), (balance.Used, balance.Remaining, balance.Held));
        Assert.Equal(88, await ledger.LedgerRemainingAsync(organization));
    }

    [Fact]
    public async Task AHoldTakenOnAnUnlimitedPlanReservesNothingAndOnceThePlanIsLimitedItsCaptureIsSpentFromTheGrants()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(null);
        var anchor = ledger.Time.GetUtcNow();
        var large = Value(await ledger.HoldAsync(organization, 1_000_000));
        var small = Value(await ledger.HoldAsync(organization, 40));
        await ledger.SubscribeAsync(organization, 10, anchor: anchor);
        var limited = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 10L, 0L), (limited.Used, limited.Remaining, limited.Held));

        // Rule 1: the capture is a spending now, refused (and the hold left open) beyond what remains.
        Refused(await ledger.CaptureAsync(organization, large.Id, 1_000_000), ErrorCode.InsufficientCredits);
        var capture = Value(await ledger.CaptureAsync(organization, large.Id, 6));
        Assert.Equal((6L, 999_994L, 4L), (capture.Captured, capture.Released, capture.Remaining));
        Assert.Equal((6L, 4L, 0L), await UsedRemainingAndHeldAsync(ledger, organization));
        // Captured in part of what it takes now, and refunded: its credits go back to the grant they came from.
        Value(await ledger.RefundAsync(organization, capture.ConsumptionId, 2));
        Assert.Equal((4L, 6L, 0L), await UsedRemainingAndHeldAsync(ledger, organization));
        Value(await ledger.Engine.CancelSubscriptionAsync(organization));
        Refused(await ledger.CaptureAsync(organization, small.Id, 1), ErrorCode.NoActiveSubscription);
        await ledger.AssertVerifiedAsync();
    }

    private static async Task<(long Used, long Remaining, long Held)> UsedRemainingAndHeldAsync(LedgerHarness ledger, string organization)
    {
        var balance = await ledger.BalanceAsync(organization);
        return (balance.Used, balance.Remaining, balance.Held);
    }

    [Fact]
    public async Task CapturingTheWholeHoldReleasesNothing()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 30));
        var capture = Value(await ledger.CaptureAsync(organization, hold.Id, 30));
        Assert.Equal((30L, 0L, 70L), (capture.Captured, capture.Released, capture.Remaining));
        Assert.Equal(30, (await ledger.BalanceAsync(organization)).Used);
    }

    [Fact]
    public async Task CapturingMoreThanHeldIsRefusedAndTheHoldStaysOpen()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 30));
        var error = Refused(await ledger.CaptureAsync(organization, hold.Id, 31, "capture-1"), ErrorCode.ValidationFailed);
        Assert.Equal("credits", error.Field);
        Refused(await ledger.CaptureAsync(organization, hold.Id, -1), ErrorCode.ValidationFailed);
        Assert.Equal((70L, 30L), ((await ledger.BalanceAsync(organization)).Remaining, (await ledger.BalanceAsync(organization)).Held));
        // The refusal was not remembered, so the same key may carry the corrected amount.
        var capture = await ledger.CaptureAsync(organization, hold.Id, 30, "capture-1");
        Assert.False(capture.Replayed);
        Assert.Equal(30, Value(capture).Captured);
    }

    [Fact]
    public async Task ReleasingAHoldReturnsEveryCreditToTheGrantsItCameFrom()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var topUp = await ledger.TopUpAsync(organization, 10);
        var hold = Value(await ledger.HoldAsync(organization, 15));
        Assert.Equal(5, await ledger.GrantRemainingAsync(organization, topUp));
        var release = Value(await ledger.ReleaseAsync(organization, hold.Id));
        Assert.Equal((15L, 20L), (release.Released, release.Remaining));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 20L, 0L), (balance.Used, balance.Remaining, balance.Held));
        Assert.Equal(10, await ledger.GrantRemainingAsync(organization, topUp));
    }

    [Fact]
    public async Task AHoldCapturedInPartChargesTheGrantsInBurnOrder()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var topUp = await ledger.TopUpAsync(organization, 10);
        var hold = Value(await ledger.HoldAsync(organization, 15));
        Value(await ledger.CaptureAsync(organization, hold.Id, 12));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(0, balance.Grants.Single(grant => grant.Source == "allowance").Remaining);
        Assert.Equal(8, await ledger.GrantRemainingAsync(organization, topUp));
    }

    [Fact]
    public async Task AnExpiredHoldReleasesItsCreditsAutomatically()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 40, ttlSeconds: 60));
        ledger.Time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(40, (await ledger.BalanceAsync(organization)).Held);
        ledger.Time.Advance(TimeSpan.FromSeconds(1));
        var lazily = await ledger.BalanceAsync(organization);
        Assert.Equal((100L, 0L), (lazily.Remaining, lazily.Held));
        Assert.Contains(organization, await ledger.Engine.Store.FindOrganizationsDueAsync(ledger.Time.GetUtcNow(), 10, CancellationToken.None));
        Value(await ledger.Engine.AdvanceAsync(organization));
        Assert.Equal(100, await ledger.LedgerRemainingAsync(organization));
        Assert.Contains(await ledger.EntriesAsync(organization), entry => entry.Kind == "release" && entry.ReferenceId == hold.Id);
        await ledger.RestartAsync();
        Assert.Equal((100L, 0L), ((await ledger.BalanceAsync(organization)).Remaining, (await ledger.BalanceAsync(organization)).Held));
    }

    [Fact]
    public async Task CapturingOrReleasingAnExpiredHoldIsRefusedWithHoldExpired()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 40, ttlSeconds: 60));
        ledger.Time.Advance(TimeSpan.FromSeconds(60));
        Refused(await ledger.CaptureAsync(organization, hold.Id, 10), ErrorCode.HoldExpired);
        Refused(await ledger.ReleaseAsync(organization, hold.Id), ErrorCode.HoldExpired);
        await ledger.RestartAsync();
        Refused(await ledger.CaptureAsync(organization, hold.Id, 10), ErrorCode.HoldExpired);
        Assert.Equal((0L, 100L), ((await ledger.BalanceAsync(organization)).Used, (await ledger.BalanceAsync(organization)).Remaining));
    }

    [Fact]
    public async Task SettlingASettledHoldWithAnotherKeyIsRefusedWithHoldAlreadySettled()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var captured = Value(await ledger.HoldAsync(organization, 10));
        var released = Value(await ledger.HoldAsync(organization, 10));
        Value(await ledger.CaptureAsync(organization, captured.Id, 5, "capture"));
        Value(await ledger.ReleaseAsync(organization, released.Id, "release"));
        Refused(await ledger.CaptureAsync(organization, captured.Id, 5, "capture-again"), ErrorCode.HoldAlreadySettled);
        Refused(await ledger.ReleaseAsync(organization, captured.Id, "release-captured"), ErrorCode.HoldAlreadySettled);
        Refused(await ledger.CaptureAsync(organization, released.Id, 1, "capture-released"), ErrorCode.HoldAlreadySettled);
        Refused(await ledger.ReleaseAsync(organization, released.Id, "release-again"), ErrorCode.HoldAlreadySettled);
        await ledger.RestartAsync();
        Refused(await ledger.ReleaseAsync(organization, captured.Id, "after-restart"), ErrorCode.HoldAlreadySettled);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((5L, 95L, 0L), (balance.Used, balance.Remaining, balance.Held));
    }

    [Fact]
    public async Task SettlingASettledHoldAgainWithTheSameKeyReplays()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var captured = Value(await ledger.HoldAsync(organization, 10));
        var released = Value(await ledger.HoldAsync(organization, 10));
        var capture = Value(await ledger.CaptureAsync(organization, captured.Id, 4, "capture"));
        var release = Value(await ledger.ReleaseAsync(organization, released.Id, "release"));
        var captureAgain = await ledger.CaptureAsync(organization, captured.Id, 4, "capture");
        var releaseAgain = await ledger.ReleaseAsync(organization, released.Id, "release");
        Assert.True(captureAgain.Replayed);
        Assert.True(releaseAgain.Replayed);
        Assert.Equal(capture, Value(captureAgain));
        Assert.Equal(release, Value(releaseAgain));
        Refused(await ledger.CaptureAsync(organization, captured.Id, 5, "capture"), ErrorCode.IdempotencyConflict);
        await ledger.RestartAsync();
        Assert.Equal(capture, Value(await ledger.CaptureAsync(organization, captured.Id, 4, "capture")));
        Assert.Equal((4L, 96L), ((await ledger.BalanceAsync(organization)).Used, (await ledger.BalanceAsync(organization)).Remaining));
    }

    [Fact]
    public async Task AHoldStaysOpenAcrossARestartAndIsCapturedAfterIt()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 25, "stream-1"));
        await ledger.RestartAsync();
        Assert.Equal(25, (await ledger.BalanceAsync(organization)).Held);
        var replay = await ledger.HoldAsync(organization, 25, "stream-1");
        Assert.True(replay.Replayed);
        Assert.Equal(hold, Value(replay));
        Value(await ledger.CaptureAsync(organization, hold.Id, 20));
        Assert.Equal((20L, 80L), ((await ledger.BalanceAsync(organization)).Used, (await ledger.BalanceAsync(organization)).Remaining));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(Limits.HoldTtlSecondsMax + 1)]
    public async Task AHoldTimeToLiveOutsideItsLimitsIsRefusedAsInvalid(int ttlSeconds)
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var error = Refused(await ledger.HoldAsync(organization, 1, ttlSeconds: ttlSeconds), ErrorCode.ValidationFailed);
        Assert.Equal("ttlSeconds", error.Field);
        var longest = Value(await ledger.HoldAsync(organization, 1, ttlSeconds: Limits.HoldTtlSecondsMax));
        Assert.Equal(ledger.Time.GetUtcNow().AddDays(1), longest.ExpiresAt);
    }

    [Fact]
    public async Task AHoldOfAnotherOrganizationOrOfNoneIsNotFound()
    {
        await using var ledger = await StartAsync();
        var owner = await ledger.OrganizationAsync(100);
        var stranger = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(owner, 10));
        Refused(await ledger.CaptureAsync(stranger, hold.Id, 10), ErrorCode.NotFound);
        Refused(await ledger.ReleaseAsync(stranger, hold.Id), ErrorCode.NotFound);
        Refused(await ledger.CaptureAsync(owner, Guid.NewGuid().ToString(), 1), ErrorCode.NotFound);
        Value(await ledger.CaptureAsync(owner, hold.Id, 10));
        Refused(await ledger.ReleaseAsync(stranger, hold.Id), ErrorCode.NotFound);
        Assert.Equal(100, (await ledger.BalanceAsync(stranger)).Remaining);
    }
}
