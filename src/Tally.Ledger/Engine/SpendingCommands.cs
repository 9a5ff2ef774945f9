using System.Globalization;
using Tally.Ledger.Model;

namespace Tally.Ledger.Engine;

public sealed record ConsumeRequest(
    string OrganizationId, long Credits, string IdempotencyKey, string? AssistantId = null, string? Identifier = null,
    IReadOnlyDictionary<string, string>? Metadata = null);

public sealed record HoldRequest(
    string OrganizationId, long Credits, string IdempotencyKey, int TtlSeconds = Limits.HoldTtlSecondsDefault,
    string? AssistantId = null, string? Identifier = null);

internal static class Spending
{
    /// <summary>Rule 4: what must be true before any credits are spent (the organization's status is checked before, by every spending command).</summary>
    public static LedgerError? RefusalToSpend(OrganizationState state)
    {
        if (state.Subscription is null)
        {
            return new LedgerError(ErrorCode.NoActiveSubscription, "No active subscription found for this organization.");
        }
        return null;
    }

    /// <summary>
    /// Rules 1, 4 and 7 for a consumption or a hold: the credits taken from grants in burn order (none on an
    /// unlimited plan), or the refusal; a refusal changes nothing.
    /// </summary>
    public static (Allocation[] Allocations, LedgerError? Refusal) Take(OrganizationState state, long credits, DateTimeOffset now)
    {
        if (RefusalToSpend(state) is { } refusal) return ([], refusal);
        if (state.Subscription!.Unlimited) return ([], null);
        var taken = Rules.TryAllocate(state, credits, now);
        return taken is null ? ([], Insufficient(state, credits, now)) : (taken, null);
    }

    public static LedgerError Insufficient(OrganizationState state, long credits, DateTimeOffset now) =>
        new(ErrorCode.InsufficientCredits, $"This needs {credits} {(credits == 1 ? "credit" : "credits")} and {state.SpendableAt(now)} remain.");

    /// <summary>Credits outside 1..<paramref name="maximum"/> are refused as invalid (SPEC §3 limits).</summary>
    public static LedgerError? InvalidCredits(long credits, long maximum = Limits.OperationCreditsMax) =>
        credits is < 1 || credits > maximum
            ? LedgerError.Invalid("credits", $"Credits must be a whole number from 1 to {maximum:N0}.")
            : null;

    public static string Join(params object?[] parts) => string.Join('\u001f', parts);

    /// <summary>
    /// Metadata as one text for the fingerprint, each pair key=value, pairs apart by U+001E, in key order. It reads
    /// one way only: neither keys nor values may hold that separator (the API refuses control characters in both,
    /// but tabs and line breaks in values), and a key's own '=' and '\' are escaped, so {"a=b":"c"} and {"a":"b=c"}
    /// differ. Keys without them, nearly all, read as they did before the escaping, so earlier keys still replay.
    /// </summary>
    public static string MetadataText(IReadOnlyDictionary<string, string>? metadata) =>
        metadata is null ? "" : string.Join('\u001e', metadata.OrderBy(pair => pair.Key, StringComparer.Ordinal)
            .Select(pair => EscapedKey(pair.Key) + "=" + pair.Value));

    private static string EscapedKey(string key) =>
        key.AsSpan().IndexOfAny('=', '\\') < 0 ? key : key.Replace("\\", "\\\\").Replace("=", "\\=");
}

internal sealed class ConsumeCommand(ConsumeRequest request)
    : IdempotentCommand<ConsumptionReceipt>(request.OrganizationId, request.IdempotencyKey, LedgerJson.Default.ConsumptionReceipt)
{
    protected override bool NeedsActiveOrganization => true;

    protected override string Parameters => Spending.Join(
        "consume", request.Credits, request.AssistantId, request.Identifier, Spending.MetadataText(request.Metadata));

    protected override LedgerError? Validate() => Spending.InvalidCredits(request.Credits);

    protected override Outcome<ConsumptionReceipt> DecideFresh(OrganizationState state, DecisionContext context)
    {
        var now = context.Now;
        var (allocations, refusal) = Spending.Take(state, request.Credits, now);
        if (refusal is not null) return Outcome<ConsumptionReceipt>.Failure(refusal);
        var id = Guid.CreateVersion7(now).ToString();
        if (allocations.Length == 0) context.Changes.Entry(state.Id, EntryKind.Consume, null, -request.Credits, id, now);
        Rules.RecordAllocation(state, allocations, EntryKind.Consume, id, now, context.Changes);
        state.UsedInPeriod += request.Credits;
        context.Changes.Consumptions[id] = new ConsumptionRecord
        {
            Id = id,
            OrganizationId = state.Id,
            Credits = request.Credits,
            Allocations = allocations,
            PeriodStart = state.Subscription!.PeriodStart,
            AssistantId = request.AssistantId,
            Identifier = request.Identifier,
            Metadata = request.Metadata is null ? null : new Dictionary<string, string>(request.Metadata),
            CreatedAt = now,
        };
        return new(new ConsumptionReceipt(id, request.Credits, Rules.ReportedRemaining(state, now),
            request.AssistantId, request.Identifier, null, now), null);
    }
}

internal sealed class RefundCommand(string organizationId, string consumptionId, long? credits, string key)
    : IdempotentCommand<RefundReceipt>(organizationId, key, LedgerJson.Default.RefundReceipt)
{
    protected override bool NeedsActiveOrganization => true;

    public override string ConsumptionId => consumptionId;

    protected override string Parameters => Spending.Join("refund", consumptionId, credits);

    protected override Outcome<RefundReceipt> DecideFresh(OrganizationState state, DecisionContext context)
    {
        var consumption = context.FindConsumption(state.Id, consumptionId);
        if (consumption is null) return Outcome<RefundReceipt>.Failure(LedgerError.NotFound("The consumption"));
        var refundable = consumption.Credits - consumption.Refunded;
        var amount = credits ?? refundable;
        if (amount <= 0 || amount > refundable)
        {
            return Outcome<RefundReceipt>.Failure(LedgerError.Invalid("credits",
                $"At most {refundable} of this consumption's {consumption.Credits} credits can still be refunded."));
        }
        var now = context.Now;
        var id = Guid.CreateVersion7(now).ToString();
        var returned = TakeFromTail(consumption.Allocations, consumption.Credits - consumption.Refunded, amount);
        if (returned.Count == 0) context.Changes.Entry(state.Id, EntryKind.Refund, null, amount, id, now);
        Rules.ReturnCredits(state, returned, EntryKind.Refund, id, now, now, context.Changes);
        consumption.Refunded += amount;
        context.Changes.Consumptions[consumption.Id] = consumption;
        if (consumption.PeriodStart is { } periodStart && periodStart == state.UsagePeriodStart)
        {
            state.UsedInPeriod -= amount;
        }
        return new(new RefundReceipt(id, consumption.Id, amount, consumption.Refunded, Rules.ReportedRemaining(state, now), now), null);
    }

    /// <summary>
    /// Refunds come back from the end of the allocation list: after earlier refunds of R credits, the
    /// unrefunded part is the first (credits - R) credits in burn order, and a new refund takes its tail.
    /// </summary>
    internal static List<Allocation> TakeFromTail(Allocation[] allocations, long unrefunded, long amount)
    {
        var result = new List<Allocation>();
        long offset = 0;
        foreach (var allocation in allocations)
        {
            var start = offset;
            var end = offset + allocation.Credits;
            offset = end;
            var from = Math.Max(start, unrefunded - amount);
            var to = Math.Min(end, unrefunded);
            if (to > from) result.Add(allocation with { Credits = to - from });
        }
        return result;
    }
}

internal sealed class HoldCommand(HoldRequest request)
    : IdempotentCommand<HoldReceipt>(request.OrganizationId, request.IdempotencyKey, LedgerJson.Default.HoldReceipt)
{
    protected override bool NeedsActiveOrganization => true;

    protected override string Parameters => Spending.Join(
        "hold", request.Credits, request.TtlSeconds, request.AssistantId, request.Identifier);

    protected override LedgerError? Validate() =>
        Spending.InvalidCredits(request.Credits)
        ?? (request.TtlSeconds is < 1 || request.TtlSeconds > Limits.HoldTtlSecondsMax
            ? LedgerError.Invalid("ttlSeconds", $"A hold lives from 1 to {Limits.HoldTtlSecondsMax:N0} seconds.")
            : null);

    protected override Outcome<HoldReceipt> DecideFresh(OrganizationState state, DecisionContext context)
    {
        var now = context.Now;
        var (allocations, refusal) = Spending.Take(state, request.Credits, now);
        if (refusal is not null) return Outcome<HoldReceipt>.Failure(refusal);
        var id = Guid.CreateVersion7(now).ToString();
        Rules.RecordAllocation(state, allocations, EntryKind.Hold, id, now, context.Changes);
        var hold = new HoldState(id, request.Credits, now.AddSeconds(request.TtlSeconds), now, allocations, request.AssistantId, request.Identifier);
        state.OpenHolds[id] = hold;
        context.Changes.Holds[id] = new HoldRow(state.Id, hold, HoldStatus.Open, 0, null);
        return new(new HoldReceipt(id, hold.Credits, hold.ExpiresAt, Rules.ReportedRemaining(state, now), now), null);
    }
}

/// <summary>Capture and release share the checks on the hold and its settlement.</summary>
internal abstract class SettleCommand<T>(string organizationId, string holdId, string key, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    : IdempotentCommand<T>(organizationId, key, type)
{
    protected override bool NeedsActiveOrganization => true;

    public override string HoldId => holdId;

    protected override Outcome<T> DecideFresh(OrganizationState state, DecisionContext context)
    {
        if (state.OpenHolds.TryGetValue(holdId, out var hold)) return Settle(state, hold, context);
        var settled = context.FindSettledHold(state.Id, holdId);
        if (settled is null) return Outcome<T>.Failure(LedgerError.NotFound("The hold"));
        return settled.Status == HoldStatus.Expired
            ? Outcome<T>.Failure(new LedgerError(ErrorCode.HoldExpired, string.Create(CultureInfo.InvariantCulture, $"The hold expired at {settled.Hold.ExpiresAt:yyyy-MM-dd'T'HH:mm:ss.fffzzz} and its credits were released.")))
            : Outcome<T>.Failure(new LedgerError(ErrorCode.HoldAlreadySettled, $"The hold was already {Names.Of(settled.Status)}."));
    }

    protected abstract Outcome<T> Settle(OrganizationState state, HoldState hold, DecisionContext context);

    protected static void Close(OrganizationState state, HoldState hold, HoldStatus status, long captured, DecisionContext context)
    {
        state.OpenHolds.Remove(hold.Id);
        context.Changes.Holds[hold.Id] = new HoldRow(state.Id, hold, status, captured, context.Now);
    }
}

internal sealed class CaptureCommand(string organizationId, string holdId, long credits, string key)
    : SettleCommand<CaptureReceipt>(organizationId, holdId, key, LedgerJson.Default.CaptureReceipt)
{
    protected override string Parameters => Spending.Join("capture", HoldId, credits);

    protected override LedgerError? Validate() => Spending.InvalidCredits(credits);

    protected override Outcome<CaptureReceipt> Settle(OrganizationState state, HoldState hold, DecisionContext context)
    {
        if (credits > hold.Credits)
        {
            return Outcome<CaptureReceipt>.Failure(LedgerError.Invalid("credits", $"At most the held {hold.Credits} credits can be captured."));
        }
        var now = context.Now;
        var consumptionId = Guid.CreateVersion7(now).ToString();
        Allocation[] captured;
        if (hold.Allocations.Length == 0 && state.Subscription is not { Unlimited: true })
        {
            // A hold taken on an unlimited plan reserved nothing. Captured once the plan is limited (or cancelled), its
            // credits are spent now, like a consumption's (rule 1): from the grants, or refused with nothing changed.
            var (taken, refusal) = Spending.Take(state, credits, now);
            if (refusal is not null) return Outcome<CaptureReceipt>.Failure(refusal);
            captured = taken;
            Rules.RecordAllocation(state, captured, EntryKind.Capture, consumptionId, now, context.Changes);
        }
        else
        {
            captured = RefundCommand.TakeFromTail(hold.Allocations, credits, credits).ToArray();
            context.Changes.Entry(state.Id, EntryKind.Capture, null, -credits, consumptionId, now);
        }
        var released = RefundCommand.TakeFromTail(hold.Allocations, hold.Credits, hold.Credits - credits);
        Rules.ReturnCredits(state, released, EntryKind.Release, hold.Id, now, now, context.Changes);
        state.UsedInPeriod += credits;
        context.Changes.Consumptions[consumptionId] = new ConsumptionRecord
        {
            Id = consumptionId,
            OrganizationId = state.Id,
            Credits = credits,
            Allocations = captured,
            PeriodStart = state.UsagePeriodStart,
            AssistantId = hold.AssistantId,
            Identifier = hold.Identifier,
            HoldId = hold.Id,
            CreatedAt = now,
        };
        Close(state, hold, HoldStatus.Captured, credits, context);
        return new(new CaptureReceipt(hold.Id, consumptionId, credits, hold.Credits - credits, Rules.ReportedRemaining(state, now)), null);
    }
}

internal sealed class ReleaseCommand(string organizationId, string holdId, string key)
    : SettleCommand<ReleaseReceipt>(organizationId, holdId, key, LedgerJson.Default.ReleaseReceipt)
{
    protected override string Parameters => Spending.Join("release", HoldId);

    protected override Outcome<ReleaseReceipt> Settle(OrganizationState state, HoldState hold, DecisionContext context)
    {
        Rules.ReturnCredits(state, hold.Allocations, EntryKind.Release, hold.Id, context.Now, context.Now, context.Changes);
        Close(state, hold, HoldStatus.Released, 0, context);
        return new(new ReleaseReceipt(hold.Id, hold.Credits, Rules.ReportedRemaining(state, context.Now)), null);
    }
}
