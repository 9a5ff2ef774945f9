namespace Tally.Ledger.Model;

public sealed class GrantState
{
    public required string Id { get; init; }
    /// <summary>Credits granted: fixed, except for an allowance resized by a change of terms within its period.</summary>
    public required long Credits { get; set; }
    public long Remaining { get; set; }
    public required GrantSource Source { get; init; }
    public required int Priority { get; init; }
    public required DateTimeOffset EffectiveAt { get; init; }
    /// <summary>Fixed, except for a period's grants when a change of terms within the period moves its end.</summary>
    public DateTimeOffset? ExpiresAt { get; set; }
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>For allowance and rollover grants, the start of the period they belong to.</summary>
    public DateTimeOffset? PeriodStart { get; init; }

    /// <summary>Set once the expiry has been written to the ledger; the grant then leaves memory.</summary>
    public bool Expired { get; set; }

    public bool IsSpendableAt(DateTimeOffset now) =>
        !Expired && EffectiveAt <= now && (ExpiresAt is null || now < ExpiresAt);

    public GrantState Copy() => (GrantState)MemberwiseClone();
}

/// <summary>Credits taken from one grant by a consumption or a hold.</summary>
public readonly record struct Allocation(string GrantId, long Credits);

public sealed record HoldState(
    string Id,
    long Credits,
    DateTimeOffset ExpiresAt,
    DateTimeOffset CreatedAt,
    Allocation[] Allocations,
    string? AssistantId,
    string? Identifier);

public sealed record AssistantState(string Id, string Name, DateTimeOffset CreatedAt);

public sealed class SubscriptionState
{
    public required string Plan { get; init; }

    /// <summary>Null means unlimited.</summary>
    public long? CreditsPerPeriod { get; init; }
    public required PeriodKind Period { get; init; }
    public required DateTimeOffset Anchor { get; init; }
    public long RolloverMax { get; init; }
    public required DateTimeOffset PeriodStart { get; set; }
    public required DateTimeOffset PeriodEnd { get; set; }
    public bool Unlimited => CreditsPerPeriod is null;

    public SubscriptionState Copy() => (SubscriptionState)MemberwiseClone();
}

/// <summary>
/// Everything the engine needs in memory to decide a command for one organization. Published copies
/// are never changed again: the writer works on a copy and publishes it after the commit, so readers
/// always see committed state.
/// </summary>
public sealed class OrganizationState
{
    public required string Id { get; init; }
    public required string Name { get; set; }
    public string? ExternalId { get; set; }
    public OrganizationStatus Status { get; set; }
    public required DateTimeOffset CreatedAt { get; init; }
    public SubscriptionState? Subscription { get; set; }

    /// <summary>Every grant that is not yet written as expired, in creation order.</summary>
    public List<GrantState> Grants { get; private set; } = [];
    public Dictionary<string, HoldState> OpenHolds { get; private set; } = [];
    public List<AssistantState> Assistants { get; private set; } = [];

    /// <summary>Credits consumed in the current period minus those refunded for them (SPEC §2 rule 9).</summary>
    public long UsedInPeriod { get; set; }

    /// <summary>
    /// After a cancellation, the start of the period it happened in. <see cref="UsedInPeriod"/> still counts that
    /// period, so that a subscription resumed within it continues its usage instead of forgetting it.
    /// </summary>
    public DateTimeOffset? CancelledPeriodStart { get; set; }

    /// <summary>The period whose usage <see cref="UsedInPeriod"/> counts; null before any subscription.</summary>
    public DateTimeOffset? UsagePeriodStart => Subscription?.PeriodStart ?? CancelledPeriodStart;

    public OrganizationState Copy()
    {
        var copy = (OrganizationState)MemberwiseClone();
        copy.Subscription = Subscription?.Copy();
        copy.Grants = Grants.ConvertAll(grant => grant.Copy());
        copy.OpenHolds = new Dictionary<string, HoldState>(OpenHolds);
        copy.Assistants = [.. Assistants];
        return copy;
    }

    public long SpendableAt(DateTimeOffset now)
    {
        long total = 0;
        foreach (var grant in Grants)
        {
            if (grant.IsSpendableAt(now)) total += grant.Remaining;
        }
        return total;
    }

    /// <summary>Credits that open holds reserved from grants (a hold on an unlimited plan reserves none).</summary>
    public long Held()
    {
        long total = 0;
        foreach (var hold in OpenHolds.Values)
        {
            foreach (var allocation in hold.Allocations) total += allocation.Credits;
        }
        return total;
    }

    /// <summary>True when a period boundary, a grant expiry or a hold expiry has passed and is not yet written.</summary>
    public bool NeedsAdvanceAt(DateTimeOffset now)
    {
        if (Subscription is { } subscription && now >= subscription.PeriodEnd) return true;
        foreach (var grant in Grants)
        {
            if (grant.ExpiresAt is { } expiresAt && now >= expiresAt) return true;
        }
        foreach (var hold in OpenHolds.Values)
        {
            if (now >= hold.ExpiresAt) return true;
        }
        return false;
    }

    /// <summary>The next instant at which time alone changes this organization: what the sweep looks for.</summary>
    public DateTimeOffset? NextDeadline()
    {
        if (Status == OrganizationStatus.Deleted) return null;
        DateTimeOffset? next = Subscription?.PeriodEnd;
        foreach (var grant in Grants)
        {
            if (grant.ExpiresAt is { } expiresAt && !grant.Expired && (next is null || expiresAt < next)) next = expiresAt;
        }
        foreach (var hold in OpenHolds.Values)
        {
            if (next is null || hold.ExpiresAt < next) next = hold.ExpiresAt;
        }
        return next;
    }

    public GrantState? FindGrant(string grantId)
    {
        foreach (var grant in Grants)
        {
            if (grant.Id == grantId) return grant;
        }
        return null;
    }

    /// <summary>Burn order of SPEC §2 rule 5: soonest expiry first (never last), then lower priority, then oldest.</summary>
    public static readonly Comparison<GrantState> BurnOrder = static (left, right) =>
    {
        var byExpiry = (left.ExpiresAt ?? DateTimeOffset.MaxValue).CompareTo(right.ExpiresAt ?? DateTimeOffset.MaxValue);
        if (byExpiry != 0) return byExpiry;
        var byPriority = left.Priority.CompareTo(right.Priority);
        if (byPriority != 0) return byPriority;
        var byAge = left.CreatedAt.CompareTo(right.CreatedAt);
        if (byAge != 0) return byAge;
        // A rollover is issued in the same instant as the allowance it accompanies, with the same expiry, but
        // its credits are a period older, so it burns first; without this the order would follow random ids.
        var byOrigin = (left.Source != GrantSource.Rollover).CompareTo(right.Source != GrantSource.Rollover);
        return byOrigin != 0 ? byOrigin : string.CompareOrdinal(left.Id, right.Id);
    };

    /// <summary>The grants that can be spent at <paramref name="now"/>, in burn order.</summary>
    public List<GrantState> SpendableInBurnOrder(DateTimeOffset now)
    {
        var spendable = Grants.FindAll(grant => grant.IsSpendableAt(now) && grant.Remaining > 0);
        spendable.Sort(BurnOrder);
        return spendable;
    }
}
