using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Tally.Ledger.Model;

namespace Tally.Ledger.Engine;

/// <summary>
/// The ledger rules of SPEC §2 applied to one organization's working state. Every change to a balance
/// goes through here and writes its ledger entries in the same step, so state and ledger cannot disagree.
/// </summary>
internal static class Rules
{
    /// <summary>Writes what time has done since the last change: expired holds, period renewals, expired grants.</summary>
    public static void Advance(OrganizationState state, DateTimeOffset now, BatchChanges changes)
    {
        ExpireHolds(state, now, changes);
        RenewPeriod(state, now, changes);
        ExpireGrants(state, now, changes);
    }

    /// <summary>Remaining as the APIs report it: -1 on an unlimited subscription.</summary>
    public static long ReportedRemaining(OrganizationState state, DateTimeOffset now) =>
        state.Subscription is { Unlimited: true } ? -1 : state.SpendableAt(now);

    /// <summary>Takes credits from spendable grants in burn order, or returns null and changes nothing.</summary>
    public static Allocation[]? TryAllocate(OrganizationState state, long credits, DateTimeOffset now)
    {
        Debug.Assert(credits > 0);
        var grants = state.SpendableInBurnOrder(now);
        long available = 0;
        foreach (var grant in grants) available += grant.Remaining;
        if (available < credits) return null;

        var allocations = new List<Allocation>(2);
        var left = credits;
        foreach (var grant in grants)
        {
            if (left == 0) break;
            var taken = Math.Min(left, grant.Remaining);
            grant.Remaining -= taken;
            left -= taken;
            allocations.Add(new Allocation(grant.Id, taken));
        }
        return allocations.ToArray();
    }

    /// <summary>Writes the entries and grant changes of an allocation that <see cref="TryAllocate"/> made.</summary>
    public static void RecordAllocation(
        OrganizationState state, Allocation[] allocations, EntryKind kind, string referenceId, DateTimeOffset now, BatchChanges changes)
    {
        foreach (var allocation in allocations)
        {
            var grant = state.FindGrant(allocation.GrantId)
                ?? throw new InvalidOperationException($"Allocation names grant {allocation.GrantId} that is not in memory.");
            if (grant.Remaining < 0) throw new InvalidOperationException($"Grant {grant.Id} would go negative.");
            changes.TouchGrant(state.Id, grant);
            changes.Entry(state.Id, kind, grant.Id, -allocation.Credits, referenceId, now);
        }
    }

    /// <summary>
    /// Gives credits back to the grants they came from. Credits returned to a grant that had expired by
    /// <paramref name="returnedAt"/> are written as returned and at once forfeited: they are not spendable.
    /// </summary>
    public static void ReturnCredits(
        OrganizationState state, IEnumerable<Allocation> allocations, EntryKind kind, string referenceId,
        DateTimeOffset returnedAt, DateTimeOffset now, BatchChanges changes)
    {
        foreach (var allocation in allocations)
        {
            if (allocation.Credits == 0) continue;
            var grant = state.FindGrant(allocation.GrantId);
            var stillLive = grant is not null && !grant.Expired && (grant.ExpiresAt is null || returnedAt < grant.ExpiresAt);
            var forfeited = allocation.Credits;
            if (grant is not null && stillLive)
            {
                // An allowance resized below what it had given out keeps that much over its new size, which credits
                // coming back pay off first, forfeited, so that it never holds more than the new size leaves.
                forfeited = Math.Min(allocation.Credits, Math.Max(0, grant.Credits - AllowanceSize(state, grant)));
                grant.Credits -= forfeited;
                grant.Remaining += allocation.Credits - forfeited;
                if (grant.Remaining > grant.Credits) throw new InvalidOperationException($"Grant {grant.Id} would hold more than granted.");
                if (forfeited > 0) changes.GrantsResized.Add(grant.Id);
                changes.TouchGrant(state.Id, grant);
            }
            changes.Entry(state.Id, kind, allocation.GrantId, allocation.Credits, referenceId, now);
            if (forfeited > 0) changes.Entry(state.Id, EntryKind.Forfeit, allocation.GrantId, -forfeited, referenceId, now);
        }
    }

    /// <summary>
    /// Issues the allowance of the period that contains <paramref name="now"/> under the current terms. A renewal
    /// names what it renews (<paramref name="renewing"/>): its grants then have ids and creation times that follow
    /// from that and the new period alone, not from the moment they are computed. A balance read after a boundary
    /// computes the renewal without writing it, so every such read, and the write that follows, show the same grants.
    /// </summary>
    /// <param name="startsAt">When the period starts, if not on its anchor's boundary: a change of terms that starts a
    /// new period in the middle of one (<see cref="PutSubscriptionCommand"/>). It still ends on the anchor's boundary.</param>
    public static void StartPeriod(
        OrganizationState state, DateTimeOffset now, long rolloverCredits, BatchChanges changes, string? renewing = null, DateTimeOffset? startsAt = null)
    {
        var subscription = state.Subscription ?? throw new InvalidOperationException("No subscription to start a period of.");
        var onAnchor = Periods.StartContaining(subscription.Anchor, subscription.Period, now);
        subscription.PeriodStart = startsAt ?? onAnchor;
        subscription.PeriodEnd = Periods.EndOf(subscription.Anchor, subscription.Period, onAnchor);
        if (rolloverCredits > 0) AddPeriodGrant(state, GrantSource.Rollover, rolloverCredits, now, changes, renewing);
        if (subscription.CreditsPerPeriod is > 0 and var allowance) AddPeriodGrant(state, GrantSource.Allowance, allowance, now, changes, renewing);
    }

    public static GrantState AddGrant(
        OrganizationState state, long credits, GrantSource source, int priority, DateTimeOffset effectiveAt,
        DateTimeOffset? expiresAt, DateTimeOffset? periodStart, DateTimeOffset now, BatchChanges changes,
        string? id = null, DateTimeOffset? createdAt = null)
    {
        var grant = new GrantState
        {
            Id = id ?? Guid.CreateVersion7(now).ToString(),
            Credits = credits,
            Remaining = credits,
            Source = source,
            Priority = priority,
            EffectiveAt = effectiveAt,
            ExpiresAt = expiresAt,
            CreatedAt = createdAt ?? now,
            PeriodStart = periodStart,
        };
        state.Grants.Add(grant);
        changes.TouchGrant(state.Id, grant);
        changes.Entry(state.Id, EntryKind.Grant, grant.Id, credits, null, now);
        return grant;
    }

    /// <summary>Ends the current period's grants at once: used when a subscription's terms change or it is cancelled.</summary>
    public static void EndPeriodGrants(OrganizationState state, DateTimeOffset now, BatchChanges changes)
    {
        foreach (var grant in state.Grants)
        {
            if (grant.Source is GrantSource.Allowance or GrantSource.Rollover && !grant.Expired) Expire(state, grant, now, changes);
        }
        state.Grants.RemoveAll(grant => grant.Expired);
    }

    /// <summary>
    /// What a grant grants now: for the current period's allowance, the period's credits (none on an unlimited plan,
    /// which spends from no grant); for any other grant, its own credits.
    /// </summary>
    private static long AllowanceSize(OrganizationState state, GrantState grant) =>
        grant.Source == GrantSource.Allowance && state.Subscription is { } subscription && grant.PeriodStart == subscription.PeriodStart
            ? subscription.CreditsPerPeriod ?? 0
            : grant.Credits;

    /// <summary>
    /// Gives the current period's allowance <paramref name="credits"/> under terms changed within the period: what it
    /// gave out already (spent or held) stays taken, so its remaining becomes the new credits less that, never below
    /// zero, written as a grant entry for credits added or an expiry entry for credits taken away. Its credits become
    /// the new credits, or what it gave out if that is more (a downgrade below it), so that what it gave out is still
    /// its credits less its remaining: credits given back later pay off the difference first (<see cref="ReturnCredits"/>).
    /// Without an allowance (the period began unlimited or granting nothing) the period gets one. New terms of no
    /// credits (or unlimited) keep it, with nothing left to spend, rather than end it: terms changed back within the
    /// period then resize it again, instead of finding none and issuing a second (rule 6).
    /// </summary>
    public static void ResizeAllowance(OrganizationState state, long credits, DateTimeOffset now, BatchChanges changes)
    {
        var periodStart = state.Subscription!.PeriodStart;
        // The period may end elsewhere under the new terms: its grants (allowance and rollover) expire with it.
        foreach (var grant in state.Grants)
        {
            if (grant is { Source: GrantSource.Allowance or GrantSource.Rollover, Expired: false } && grant.PeriodStart == periodStart
                && grant.ExpiresAt != state.Subscription.PeriodEnd)
            {
                grant.ExpiresAt = state.Subscription.PeriodEnd;
                changes.TouchGrant(state.Id, grant);
                changes.GrantsResized.Add(grant.Id);
            }
        }
        var allowance = state.Grants.Find(grant => grant.Source == GrantSource.Allowance && grant.PeriodStart == periodStart && !grant.Expired);
        if (allowance is null)
        {
            if (credits > 0) AddPeriodGrant(state, GrantSource.Allowance, credits, now, changes, renewing: null);
            return;
        }
        var taken = allowance.Credits - allowance.Remaining;
        var remaining = Math.Max(0, credits - taken);
        var added = remaining - allowance.Remaining;
        if (added != 0) changes.Entry(state.Id, added > 0 ? EntryKind.Grant : EntryKind.Expire, allowance.Id, added, null, now);
        allowance.Credits = Math.Max(credits, taken);
        allowance.Remaining = remaining;
        changes.TouchGrant(state.Id, allowance);
        changes.GrantsResized.Add(allowance.Id);
    }

    private static void AddPeriodGrant(OrganizationState state, GrantSource source, long credits, DateTimeOffset now, BatchChanges changes, string? renewing)
    {
        var subscription = state.Subscription!;
        AddGrant(state, credits, source, priority: 0, subscription.PeriodStart, subscription.PeriodEnd, subscription.PeriodStart, now, changes,
            id: renewing is null ? null : RenewalGrantId(state.Id, source, subscription.PeriodStart, renewing),
            createdAt: renewing is null ? null : subscription.PeriodStart);
    }

    /// <summary>
    /// A renewal grant's id: laid out as a version 7 id whose time is the new period's start (so it sorts among the
    /// others by time), the rest from a hash of the organization, the grant's source, the new period and what it
    /// renews. What it renews is the ended period and its allowance, which one organization's history renews once.
    /// </summary>
    private static string RenewalGrantId(string organizationId, GrantSource source, DateTimeOffset periodStart, string renewing)
    {
        Span<byte> bytes = stackalloc byte[32];
        var milliseconds = periodStart.ToUnixTimeMilliseconds();
        SHA256.HashData(Encoding.UTF8.GetBytes($"{organizationId}|{Names.Of(source)}|{milliseconds}|{renewing}"), bytes);
        for (var index = 0; index < 6; index++) bytes[index] = (byte)(milliseconds >> (40 - 8 * index));
        bytes[6] = (byte)(0x70 | (bytes[6] & 0x0F));
        bytes[8] = (byte)(0x80 | (bytes[8] & 0x3F));
        return new Guid(bytes[..16], bigEndian: true).ToString();
    }

    private static void ExpireHolds(OrganizationState state, DateTimeOffset now, BatchChanges changes)
    {
        List<HoldState>? expired = null;
        foreach (var hold in state.OpenHolds.Values)
        {
            if (now >= hold.ExpiresAt) (expired ??= []).Add(hold);
        }
        if (expired is null) return;
        foreach (var hold in expired)
        {
            ReturnCredits(state, hold.Allocations, EntryKind.Release, hold.Id, hold.ExpiresAt, now, changes);
            state.OpenHolds.Remove(hold.Id);
            changes.Holds[hold.Id] = new HoldRow(state.Id, hold, HoldStatus.Expired, 0, hold.ExpiresAt);
        }
    }

    /// <summary>
    /// Rule 6. When exactly one boundary has passed, the ended allowance's unused credits roll over (up to
    /// rolloverMax). When several have passed unseen (the service was down), the last full period's
    /// allowance was never touched, so the rollover is min(rolloverMax, creditsPerPeriod).
    /// </summary>
    private static void RenewPeriod(OrganizationState state, DateTimeOffset now, BatchChanges changes)
    {
        if (state.Subscription is not { } subscription || now < subscription.PeriodEnd) return;
        var endedStart = subscription.PeriodStart;
        var endedEnd = subscription.PeriodEnd;
        var newStart = Periods.StartContaining(subscription.Anchor, subscription.Period, now);
        var skippedPeriods = newStart > endedEnd;

        var endedAllowance = state.Grants.Find(grant =>
            grant.Source == GrantSource.Allowance && grant.PeriodStart == endedStart && !grant.Expired);
        long rollover = 0;
        if (subscription is { RolloverMax: > 0, CreditsPerPeriod: { } perPeriod })
        {
            if (skippedPeriods)
            {
                rollover = Math.Min(subscription.RolloverMax, perPeriod);
            }
            else if (endedAllowance is not null)
            {
                rollover = Math.Min(subscription.RolloverMax, endedAllowance.Remaining);
                if (rollover > 0)
                {
                    endedAllowance.Remaining -= rollover;
                    changes.TouchGrant(state.Id, endedAllowance);
                    changes.Entry(state.Id, EntryKind.RolloverOut, endedAllowance.Id, -rollover, null, now);
                }
            }
        }
        state.UsedInPeriod = 0;
        StartPeriod(state, now, rollover, changes, renewing: $"{endedStart.ToUnixTimeMilliseconds()}/{endedEnd.ToUnixTimeMilliseconds()}/{endedAllowance?.Id}");
    }

    private static void ExpireGrants(OrganizationState state, DateTimeOffset now, BatchChanges changes)
    {
        var any = false;
        foreach (var grant in state.Grants)
        {
            if (grant.ExpiresAt is { } expiresAt && now >= expiresAt && !grant.Expired)
            {
                Expire(state, grant, now, changes);
                any = true;
            }
        }
        if (any) state.Grants.RemoveAll(grant => grant.Expired);
    }

    private static void Expire(OrganizationState state, GrantState grant, DateTimeOffset now, BatchChanges changes)
    {
        if (grant.Remaining > 0) changes.Entry(state.Id, EntryKind.Expire, grant.Id, -grant.Remaining, null, now);
        grant.Remaining = 0;
        grant.Expired = true;
        changes.TouchGrant(state.Id, grant);
    }
}
