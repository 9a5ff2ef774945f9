using Tally.Ledger.Model;

namespace Tally.Ledger.Engine;

public sealed record LedgerEntryRow(string OrganizationId, EntryKind Kind, string? GrantId, long Credits, string? ReferenceId, DateTimeOffset CreatedAt);

public sealed record HoldRow(string OrganizationId, HoldState Hold, HoldStatus Status, long Captured, DateTimeOffset? SettledAt);

public sealed class ConsumptionRecord
{
    public required string Id { get; init; }
    public required string OrganizationId { get; init; }
    public required long Credits { get; init; }
    public long Refunded { get; set; }
    public required Allocation[] Allocations { get; init; }
    public DateTimeOffset? PeriodStart { get; init; }
    public string? AssistantId { get; init; }
    public string? Identifier { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
    public string? HoldId { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>A copy whose refunded total may change without changing this one (allocations and metadata are never changed).</summary>
    public ConsumptionRecord Copy() => (ConsumptionRecord)MemberwiseClone();
}

/// <summary>One admin action: who did what to which organization, when, and how it ended.</summary>
public sealed record AuditEntry(DateTimeOffset At, string Actor, string Action, string? OrganizationId, int Status, string? RequestId);

public sealed record AuditEntryView(long Id, DateTimeOffset At, string Actor, string Action, string? OrganizationId, int Status, string? RequestId);

public sealed record IdempotencyRecord(string OrganizationId, string Key, string Fingerprint, string Result, DateTimeOffset CreatedAt);

public sealed record ApiKeyRecord(
    string Id, string OrganizationId, string? Name, string PublicKey, string SecretHash, KeyScopes Scopes,
    DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt)
{
    public ApiKeyView ToView() => new(Id, OrganizationId, Name, PublicKey, Names.Of(Scopes), CreatedAt, RevokedAt);
}

/// <summary>
/// Everything one batch writes, collected while the writer decides and persisted in one transaction.
/// Organizations hold their final state; grants, holds and consumptions are written as they end the batch.
/// </summary>
public sealed class BatchChanges
{
    public Dictionary<string, OrganizationState> Organizations { get; } = new(StringComparer.Ordinal);

    /// <summary>Each loaded organization's next deadline as stored, so that a store rewrites it only when it moved.</summary>
    public Dictionary<string, DateTimeOffset?> DeadlinesAsLoaded { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, (string OrganizationId, GrantState Grant)> Grants { get; } = new(StringComparer.Ordinal);

    /// <summary>Grants whose credits or expiry changed (a period's grants under new terms), which a store writes in full.</summary>
    public HashSet<string> GrantsResized { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, HoldRow> Holds { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, ConsumptionRecord> Consumptions { get; } = new(StringComparer.Ordinal);
    public List<LedgerEntryRow> Entries { get; } = [];
    public Dictionary<(string OrganizationId, string Key), IdempotencyRecord> Idempotency { get; } = [];
    public List<(string OrganizationId, AssistantState Assistant)> AssistantsAdded { get; } = [];
    public List<(string OrganizationId, string AssistantId, DateTimeOffset DeletedAt)> AssistantsRemoved { get; } = [];
    public List<ApiKeyRecord> KeysAdded { get; } = [];
    public List<(string KeyId, DateTimeOffset RevokedAt)> KeysRevoked { get; } = [];
    public List<AuditEntry> AuditEntries { get; } = [];

    public bool IsEmpty =>
        Organizations.Count == 0 && KeysAdded.Count == 0 && KeysRevoked.Count == 0 && AuditEntries.Count == 0;

    public void TouchGrant(string organizationId, GrantState grant) => Grants[grant.Id] = (organizationId, grant);

    public void Entry(string organizationId, EntryKind kind, string? grantId, long credits, string? referenceId, DateTimeOffset at) =>
        Entries.Add(new LedgerEntryRow(organizationId, kind, grantId, credits, referenceId, at));
}
