using System.Text.Json;
using System.Text.Json.Serialization;
using Tally.Ledger.Model;

namespace Tally.Ledger.Engine;

public enum ErrorCode
{
    NotFound,
    ValidationFailed,
    InsufficientCredits,
    NoActiveSubscription,
    IdempotencyConflict,
    HoldExpired,
    HoldAlreadySettled,
    Overloaded,
    StoreFailure,
}

public sealed record LedgerError(ErrorCode Code, string Message, string? Field = null)
{
    public static LedgerError NotFound(string what) => new(ErrorCode.NotFound, $"{what} was not found.");

    /// <summary>What an organization's key meets once its organization is disabled or deleted, whatever it asks.</summary>
    public static readonly LedgerError OrganizationUnavailable = new(ErrorCode.NotFound, "The organization was not found or is disabled.");
    public static LedgerError Invalid(string field, string message) => new(ErrorCode.ValidationFailed, message, field);
}

/// <summary>What a command came to: a value, or an error; <see cref="Replayed"/> when an idempotency key matched.</summary>
public readonly record struct Outcome<T>(T? Value, LedgerError? Error, bool Replayed = false)
{
    public bool Succeeded => Error is null;
    public static Outcome<T> Failure(LedgerError error) => new(default, error);
}

public sealed record OrganizationView(string Id, string Name, string? ExternalId, string Status, DateTimeOffset CreatedAt);

public sealed record SubscriptionView(
    string Status, string? Plan, string? Period, long? CreditsPerPeriod, long RolloverMax,
    DateTimeOffset? Anchor, DateTimeOffset? PeriodStart, DateTimeOffset? PeriodEnd, bool Unlimited);

public sealed record GrantView(
    string Id, long Credits, long Remaining, string Source, int Priority,
    DateTimeOffset EffectiveAt, DateTimeOffset? ExpiresAt, DateTimeOffset CreatedAt);

public sealed record BalanceView(
    string OrganizationId, SubscriptionView Subscription, long Total, long Used, long Remaining, long Held,
    bool Unlimited, bool HasAssistant, string Status, IReadOnlyList<GrantView> Grants);

/// <summary>Rule 9's figures of one organization; Total = Used + Remaining, and -1 (with Remaining) when unlimited.</summary>
public readonly record struct BalanceFigures(bool Subscribed, bool Unlimited, long Used, long Remaining, long Held, bool HasAssistant)
{
    public long Total => Unlimited ? -1 : Used + Remaining;
}

/// <summary>Remaining is -1 on an unlimited subscription, as in the compatibility API.</summary>
public sealed record ConsumptionReceipt(
    string Id, long Credits, long Remaining, string? AssistantId, string? Identifier, string? HoldId, DateTimeOffset CreatedAt);

public sealed record RefundReceipt(string Id, string ConsumptionId, long Credits, long RefundedTotal, long Remaining, DateTimeOffset CreatedAt);

public sealed record HoldReceipt(string Id, long Credits, DateTimeOffset ExpiresAt, long Remaining, DateTimeOffset CreatedAt);

public sealed record CaptureReceipt(string HoldId, string ConsumptionId, long Captured, long Released, long Remaining);

public sealed record ReleaseReceipt(string HoldId, long Released, long Remaining);

public sealed record AssistantView(string Id, string Name, DateTimeOffset CreatedAt);

public sealed record ApiKeyView(
    string Id, string OrganizationId, string? Name, string PublicKey, string[] Scopes, DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt);

public sealed record ApiKeyCreated(string Id, string OrganizationId, string? Name, string PublicKey, string SecretKey, string[] Scopes, DateTimeOffset CreatedAt);

public sealed record LedgerEntryView(
    long Id, string Kind, string? GrantId, long Credits, string? ReferenceId, DateTimeOffset CreatedAt);

public sealed record Page<T>(IReadOnlyList<T> Items, string? NextCursor);

public sealed record UsageBucket(string Key, long Consumed, long Refunded, long Count);

/// <summary>
/// What a verify pass checked and found: <see cref="DifferencesFound"/> counts every difference, and
/// <see cref="Differences"/> lists the first of them (a damaged store of a million organizations would otherwise
/// answer a million lines).
/// </summary>
public sealed record VerifyReport(
    bool Clean, long OrganizationsChecked, long GrantsChecked, long EntriesChecked, long DifferencesFound, IReadOnlyList<string> Differences);

/// <summary>Results kept with an idempotency key, so that a replay answers exactly what the first request did.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(ConsumptionReceipt))]
[JsonSerializable(typeof(RefundReceipt))]
[JsonSerializable(typeof(HoldReceipt))]
[JsonSerializable(typeof(CaptureReceipt))]
[JsonSerializable(typeof(ReleaseReceipt))]
[JsonSerializable(typeof(GrantView))]
[JsonSerializable(typeof(OrganizationView))]
[JsonSerializable(typeof(Allocation[]))]
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class LedgerJson : JsonSerializerContext;
