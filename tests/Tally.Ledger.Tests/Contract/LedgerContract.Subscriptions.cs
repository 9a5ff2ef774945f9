using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 4 (an active subscription is required to spend) and the organization's own status.</summary>
public abstract partial class LedgerContract
{
    [Fact]
    public async Task ConsumingWithoutASubscriptionIsRefusedWithNoActiveSubscription()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationWithoutSubscriptionAsync();
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.NoActiveSubscription);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal("none", balance.Subscription.Status);
        Assert.Equal(0, balance.Used);
    }

    [Fact]
    public async Task HoldingWithoutASubscriptionIsRefusedWithNoActiveSubscription()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationWithoutSubscriptionAsync();
        Refused(await ledger.HoldAsync(organization, 1), ErrorCode.NoActiveSubscription);
        Assert.Equal(0, (await ledger.BalanceAsync(organization)).Held);
    }

    [Fact]
    public async Task TopUpsWithoutASubscriptionCannotBeSpentUntilOneIsActive()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationWithoutSubscriptionAsync();
        await ledger.TopUpAsync(organization, 20);
        Refused(await ledger.ConsumeAsync(organization, 1, "early"), ErrorCode.NoActiveSubscription);
        await ledger.SubscribeAsync(organization, 0);
        Value(await ledger.ConsumeAsync(organization, 1, "early"));
        Assert.Equal(19, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task AZeroCreditSubscriptionSpendsOnlyItsTopUps()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(0);
        var empty = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 0L, 0L), (empty.Total, empty.Used, empty.Remaining));
        Assert.Empty(empty.Grants);
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        await ledger.TopUpAsync(organization, 7);
        Value(await ledger.ConsumeAsync(organization, 7));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        // A prepaid plan renews to nothing: no allowance grant is issued at the boundary.
        ledger.Time.Advance(TimeSpan.FromDays(31));
        Value(await ledger.Engine.AdvanceAsync(organization));
        var renewed = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 0L), (renewed.Used, renewed.Remaining));
        Assert.DoesNotContain(renewed.Grants, grant => grant.Source == "allowance");
    }

    [Fact]
    public async Task ACancelledSubscriptionRefusesSpendingAndEndsItsAllowance()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        await ledger.TopUpAsync(organization, 5);
        var hold = Value(await ledger.HoldAsync(organization, 10));
        Value(await ledger.ConsumeAsync(organization, 30));
        Value(await ledger.Engine.CancelSubscriptionAsync(organization));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.NoActiveSubscription);
        Refused(await ledger.HoldAsync(organization, 1), ErrorCode.NoActiveSubscription);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal("none", balance.Subscription.Status);
        Assert.DoesNotContain(balance.Grants, grant => grant.Source == "allowance");
        // The hold taken before the cancellation can still be settled; its credits came from the ended allowance.
        Value(await ledger.ReleaseAsync(organization, hold.Id));
        Assert.Equal(5, (await ledger.BalanceAsync(organization)).Remaining);
        Assert.Equal(5, await ledger.LedgerRemainingAsync(organization));
    }

    [Fact]
    public async Task SubscribingAgainWithinTheSamePeriodIssuesAFreshAllowanceAndKeepsThePeriodsUsage()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        var consumption = Value(await ledger.ConsumeAsync(organization, 40));
        Value(await ledger.Engine.CancelSubscriptionAsync(organization));
        Assert.Equal((0L, 0L, 0L), await TotalUsedAndRemainingAsync(ledger, organization));
        ledger.Time.Advance(TimeSpan.FromHours(1));
        // A refund while cancelled still belongs to the period the consumption was made in.
        Value(await ledger.RefundAsync(organization, consumption.Id, 5));
        await ledger.RestartAsync();
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        // Rule 9 counts what was consumed in the current period, and periods follow the anchor: the 35 still count.
        Assert.Equal((135L, 35L, 100L), await TotalUsedAndRemainingAsync(ledger, organization));
        Value(await ledger.ConsumeAsync(organization, 100));
        Assert.Equal((135L, 135L, 0L), await TotalUsedAndRemainingAsync(ledger, organization));
    }

    [Fact]
    public async Task SubscribingAgainInALaterPeriodStartsItsUsageAtZero()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        Value(await ledger.ConsumeAsync(organization, 40));
        Value(await ledger.Engine.CancelSubscriptionAsync(organization));
        ledger.Time.Advance(TimeSpan.FromDays(40));
        var resumedAt = ledger.Time.GetUtcNow();
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        Assert.Equal((100L, 0L, 100L), await TotalUsedAndRemainingAsync(ledger, organization));
        // The new period starts when it was resumed, and ends on the anchor's boundary.
        var subscription = (await ledger.BalanceAsync(organization)).Subscription;
        Assert.Equal((resumedAt, anchor.AddMonths(2)), (subscription.PeriodStart!.Value, subscription.PeriodEnd!.Value));
    }

    [Fact]
    public async Task ChangingThePlanMidPeriodResizesThePeriodsOneAllowanceInsteadOfIssuingASecond()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        Value(await ledger.ConsumeAsync(organization, 30));
        ledger.Time.Advance(TimeSpan.FromDays(3));

        // An upgrade: the period's allowance is now 500, of which the 30 consumed are spent.
        await ledger.SubscribeAsync(organization, 500, anchor: anchor);
        Assert.Equal((500L, 30L, 470L), await TotalUsedAndRemainingAsync(ledger, organization));
        // Rule 6: a change of rollover alone (or of the plan's name) gives nothing: one allowance a period.
        await ledger.SubscribeAsync(organization, 500, rolloverMax: 10, anchor: anchor);
        Assert.Equal((500L, 30L, 470L), await TotalUsedAndRemainingAsync(ledger, organization));
        // A downgrade below what was spent leaves nothing to spend in this period.
        await ledger.SubscribeAsync(organization, 20, anchor: anchor);
        Assert.Equal((30L, 30L, 0L), await TotalUsedAndRemainingAsync(ledger, organization));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.InsufficientCredits);
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        Assert.Equal((100L, 30L, 70L), await TotalUsedAndRemainingAsync(ledger, organization));

        // The allowance is one grant, written with its new credits: a restart reads it back from the store.
        await ledger.RestartAsync();
        var allowance = Assert.Single((await ledger.BalanceAsync(organization)).Grants, grant => grant.Source == "allowance");
        Assert.Equal((100L, 70L), (allowance.Credits, allowance.Remaining));
        Assert.Equal((100L, 30L, 70L), await TotalUsedAndRemainingAsync(ledger, organization));
        Assert.Equal(70, await ledger.LedgerRemainingAsync(organization));
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task NoCreditsOrUnlimitedAndBackWithinThePeriodGiveTheAllowanceNoRefill()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        Value(await ledger.ConsumeAsync(organization, 90));
        var hold = Value(await ledger.HoldAsync(organization, 5));

        await ledger.SubscribeAsync(organization, 0, anchor: anchor);
        Assert.Equal(0, (await ledger.BalanceAsync(organization)).Remaining);
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        Assert.Equal((95L, 90L, 5L), await TotalUsedAndRemainingAsync(ledger, organization));

        await ledger.SubscribeAsync(organization, null, anchor: anchor);
        Assert.Equal(-1, (await ledger.BalanceAsync(organization)).Remaining);
        // Released while the plan grants nothing from the allowance: its 5 credits are not spendable then.
        Value(await ledger.ReleaseAsync(organization, hold.Id));
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        // Back to 100: what the period gave out and kept (the 90) still counts; the released 5 come back with the size.
        Assert.Equal((100L, 90L, 10L), await TotalUsedAndRemainingAsync(ledger, organization));
        Assert.Single((await ledger.BalanceAsync(organization)).Grants, grant => grant.Source == "allowance");
        await ledger.RestartAsync();
        Assert.Equal((100L, 90L, 10L), await TotalUsedAndRemainingAsync(ledger, organization));
        Assert.Equal(10, await ledger.LedgerRemainingAsync(organization));
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task RefundsAfterADowngradeBelowWhatWasSpentGiveBackNoMoreThanTheNewAllowance()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        var consumption = Value(await ledger.ConsumeAsync(organization, 80));
        await ledger.SubscribeAsync(organization, 50, anchor: anchor);
        Assert.Equal(0, (await ledger.BalanceAsync(organization)).Remaining);

        var allowance = Assert.Single((await ledger.BalanceAsync(organization)).Grants);
        Assert.Equal((80L, 0L), (allowance.Credits, allowance.Remaining));

        // 30 of the 80 come back: the period has then spent 50, all that its allowance now grants, so they are forfeited.
        Value(await ledger.RefundAsync(organization, consumption.Id, 30));
        Assert.Equal((50L, 50L, 0L), await TotalUsedAndRemainingAsync(ledger, organization));
        // The rest comes back to spending.
        Value(await ledger.RefundAsync(organization, consumption.Id));
        Assert.Equal((50L, 0L, 50L), await TotalUsedAndRemainingAsync(ledger, organization));
        allowance = Assert.Single((await ledger.BalanceAsync(organization)).Grants);
        Assert.Equal((50L, 50L), (allowance.Credits, allowance.Remaining));
        await ledger.RestartAsync();
        Assert.Equal((50L, 0L, 50L), await TotalUsedAndRemainingAsync(ledger, organization));
        Assert.Equal(50, await ledger.LedgerRemainingAsync(organization));
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task AnAnchorMovedAwayAndBackStartsNoPeriodThatCountsAnEarlierPeriodsConsumptions()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        var consumption = Value(await ledger.ConsumeAsync(organization, 7));
        ledger.Time.Advance(TimeSpan.FromDays(1));
        // The new anchor's period (from twelve hours after the first anchor) does not hold the first period's start: a
        // new period starts now, its usage at zero.
        var movedAt = ledger.Time.GetUtcNow();
        await ledger.SubscribeAsync(organization, 100, anchor: anchor.AddHours(12));
        ledger.Time.Advance(TimeSpan.FromDays(1));
        // Back to the first anchor, whose period holds the moved period's start: that period goes on.
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((movedAt, anchor.AddMonths(1)), (balance.Subscription.PeriodStart!.Value, balance.Subscription.PeriodEnd!.Value));
        Assert.Equal((100L, 0L, 100L), await TotalUsedAndRemainingAsync(ledger, organization));

        // A refund of the first period's consumption lowers no later period's usage: used never goes below 0.
        Value(await ledger.RefundAsync(organization, consumption.Id));
        Assert.Equal((100L, 0L, 100L), await TotalUsedAndRemainingAsync(ledger, organization));
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task APeriodLengthChangedAwayAndBackWithinThePeriodKeepsItsUsageAndItsOneAllowance()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        Value(await ledger.ConsumeAsync(organization, 30));
        ledger.Time.Advance(TimeSpan.FromDays(2));

        // Weekly from the same anchor: the week holds the month's start, so the period goes on and ends sooner.
        await ledger.SubscribeAsync(organization, 100, period: PeriodKind.Week, anchor: anchor);
        var weekly = await ledger.BalanceAsync(organization);
        Assert.Equal((anchor, anchor.AddDays(7)), (weekly.Subscription.PeriodStart!.Value, weekly.Subscription.PeriodEnd!.Value));
        Assert.Equal((100L, 30L, 70L), (weekly.Total, weekly.Used, weekly.Remaining));
        Assert.Equal(anchor.AddDays(7), Assert.Single(weekly.Grants).ExpiresAt);
        // And back: still one allowance, nothing given twice.
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        var monthly = await ledger.BalanceAsync(organization);
        Assert.Equal((100L, 30L, 70L), (monthly.Total, monthly.Used, monthly.Remaining));
        Assert.Equal(anchor.AddMonths(1), Assert.Single(monthly.Grants).ExpiresAt);
        await ledger.RestartAsync();
        Assert.Equal(anchor.AddMonths(1), Assert.Single((await ledger.BalanceAsync(organization)).Grants).ExpiresAt);
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task ASubscriptionResumedWithinAPeriodThatAChangeStartedGoesOnWithItsUsage()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        ledger.Time.Advance(TimeSpan.FromDays(3));
        // A new anchor whose period does not hold the first one's start: a period that starts now.
        var movedAt = ledger.Time.GetUtcNow();
        await ledger.SubscribeAsync(organization, 100, anchor: anchor.AddDays(1));
        Value(await ledger.ConsumeAsync(organization, 40));
        Value(await ledger.Engine.CancelSubscriptionAsync(organization));
        ledger.Time.Advance(TimeSpan.FromHours(1));

        await ledger.SubscribeAsync(organization, 100, anchor: anchor.AddDays(1));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal(movedAt, balance.Subscription.PeriodStart);
        Assert.Equal(40, balance.Used);
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task ANewAnchorMidPeriodStartsANewPeriodWithItsOwnAllowance()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        Value(await ledger.ConsumeAsync(organization, 30));
        ledger.Time.Advance(TimeSpan.FromDays(3));
        var newAnchor = ledger.Time.GetUtcNow().AddHours(-5);
        await ledger.SubscribeAsync(organization, 100, anchor: newAnchor);
        var balance = await ledger.BalanceAsync(organization);
        // Started when the terms changed, not on the new anchor's boundary five hours before; ends a month after it.
        Assert.Equal((ledger.Time.GetUtcNow(), newAnchor.AddMonths(1)), (balance.Subscription.PeriodStart!.Value, balance.Subscription.PeriodEnd!.Value));
        Assert.Equal((100L, 0L, 100L), (balance.Total, balance.Used, balance.Remaining));
        Assert.Single(balance.Grants, grant => grant.Source == "allowance");
        await ledger.AssertVerifiedAsync();
    }

    [Fact]
    public async Task PuttingTheSameSubscriptionAgainChangesNothing()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var anchor = ledger.Time.GetUtcNow();
        Value(await ledger.ConsumeAsync(organization, 30));
        await ledger.SubscribeAsync(organization, 100, anchor: anchor);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((30L, 70L), (balance.Used, balance.Remaining));
        Assert.Single(balance.Grants);
    }

    /// <remarks>
    /// Only adding or removing an assistant decides on the organization's assistants, so a store may leave them
    /// out of other batches' loads (PostgreSQL does); submitted all at once beside consumptions, the additions
    /// share batches with them and must still see every assistant the earlier batches added.
    /// </remarks>
    [Fact]
    public async Task AssistantsAddedBesideConsumptionsAreCountedAgainstTheLimitAndReportedInTheBalance()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(Limits.AssistantsPerOrganizationMax);
        var additions = Enumerable.Range(0, Limits.AssistantsPerOrganizationMax).Select(index => ledger.Engine.AddAssistantAsync(organization, $"bot {index}")).ToList();
        var consumptions = Enumerable.Range(0, 100).Select(_ => ledger.ConsumeAsync(organization)).ToList();
        var added = (await Task.WhenAll(additions)).Select(Value).ToList();
        Assert.All(await Task.WhenAll(consumptions), outcome => Value(outcome));

        Refused(await ledger.Engine.AddAssistantAsync(organization, "one too many"), ErrorCode.ValidationFailed);
        Assert.True((await ledger.BalanceAsync(organization)).HasAssistant);
        Value(await ledger.Engine.RemoveAssistantAsync(organization, added[0].Id));
        Refused(await ledger.Engine.RemoveAssistantAsync(organization, added[0].Id), ErrorCode.NotFound);
        Value(await ledger.Engine.AddAssistantAsync(organization, "in the freed place"));
        Refused(await ledger.Engine.AddAssistantAsync(organization, "one too many again"), ErrorCode.ValidationFailed);
        Assert.Equal(100, (await ledger.BalanceAsync(organization)).Used);
    }

    /// <remarks>
    /// Authentication of a write does not read the organization: each spending command refuses it in the batch
    /// that decides, before its idempotency key is looked up, so that not even a replay answers for it.
    /// </remarks>
    [Fact]
    public async Task ADisabledOrganizationCannotSpendRefundSettleOrReplayUntilItIsEnabledAgain()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var hold = Value(await ledger.HoldAsync(organization, 2));
        var consumption = Value(await ledger.ConsumeAsync(organization, 1, "before-disable"));
        Value(await ledger.Engine.UpdateOrganizationAsync(organization, null, OrganizationStatus.Disabled));
        var refusals = new[]
        {
            Refused(await ledger.ConsumeAsync(organization), ErrorCode.NotFound),
            Refused(await ledger.ConsumeAsync(organization, 1, "before-disable"), ErrorCode.NotFound),
            Refused(await ledger.HoldAsync(organization, 1), ErrorCode.NotFound),
            Refused(await ledger.CaptureAsync(organization, hold.Id, 2), ErrorCode.NotFound),
            Refused(await ledger.ReleaseAsync(organization, hold.Id), ErrorCode.NotFound),
            Refused(await ledger.RefundAsync(organization, consumption.Id), ErrorCode.NotFound),
        };
        Assert.All(refusals, refusal => Assert.Equal(LedgerError.OrganizationUnavailable, refusal));
        Assert.Equal("disabled", (await ledger.BalanceAsync(organization)).Status);
        Assert.Equal(7, (await ledger.BalanceAsync(organization)).Remaining);
        Value(await ledger.Engine.UpdateOrganizationAsync(organization, null, OrganizationStatus.Active));
        Assert.True((await ledger.ConsumeAsync(organization, 1, "before-disable")).Replayed);
        Value(await ledger.ConsumeAsync(organization));
        Value(await ledger.CaptureAsync(organization, hold.Id, 2));
        Assert.Equal(6, (await ledger.BalanceAsync(organization)).Remaining);
    }

    [Fact]
    public async Task ADeletedOrganizationIsNotFoundAnywhere()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(10);
        var consumption = Value(await ledger.ConsumeAsync(organization, 1, "before-delete"));
        Value(await ledger.Engine.DeleteOrganizationAsync(organization));
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.NotFound);
        Refused(await ledger.ConsumeAsync(organization, 1, "before-delete"), ErrorCode.NotFound);
        Refused(await ledger.HoldAsync(organization, 1), ErrorCode.NotFound);
        Refused(await ledger.RefundAsync(organization, consumption.Id), ErrorCode.NotFound);
        Refused(await ledger.GrantAsync(organization, 5), ErrorCode.NotFound);
        Refused(await ledger.Engine.GetBalanceAsync(organization), ErrorCode.NotFound);
        Assert.Null(await ledger.Engine.GetOrganizationAsync(organization));
        await ledger.RestartAsync();
        Refused(await ledger.Engine.GetBalanceAsync(organization), ErrorCode.NotFound);
    }

    [Fact]
    public async Task AnUnknownOrganizationIsNotFound()
    {
        await using var ledger = await StartAsync();
        var organization = "org-" + Guid.NewGuid();
        Refused(await ledger.ConsumeAsync(organization), ErrorCode.NotFound);
        Refused(await ledger.Engine.GetBalanceAsync(organization), ErrorCode.NotFound);
    }

    private static async Task<(long Total, long Used, long Remaining)> TotalUsedAndRemainingAsync(LedgerHarness ledger, string organization)
    {
        var balance = await ledger.BalanceAsync(organization);
        return (balance.Total, balance.Used, balance.Remaining);
    }
}
