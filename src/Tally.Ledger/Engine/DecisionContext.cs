using Tally.Ledger.Model;

namespace Tally.Ledger.Engine;

/// <summary>What the store found for the keys, consumptions and holds that a batch's commands name.</summary>
public sealed class BatchLookups
{
    public Dictionary<(string OrganizationId, string Key), IdempotencyRecord> Idempotency { get; } = [];
    public Dictionary<string, ConsumptionRecord> Consumptions { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, HoldRow> Holds { get; } = new(StringComparer.Ordinal);
}

/// <param name="Assistants">
/// Whether a command of the batch adds or removes assistants, the one decision that reads an organization's
/// assistants. A store that keeps no state between batches (PostgreSQL) loads them only then; one that publishes
/// the batch's states as committed (SQLite) always has them.
/// </param>
public sealed record BatchLookupRequest(
    IReadOnlyList<(string OrganizationId, string Key)> IdempotencyKeys,
    IReadOnlyList<(string OrganizationId, string ConsumptionId)> Consumptions,
    IReadOnlyList<(string OrganizationId, string HoldId)> Holds,
    bool Assistants = false);

/// <summary>
/// The writer's view while it decides one batch: committed state as loaded, a working copy of each
/// organization it touches (advanced to now on first touch), and the changes to persist.
/// </summary>
internal sealed class DecisionContext(
    DateTimeOffset now, IReadOnlyDictionary<string, OrganizationState> committed, BatchLookups lookups)
{
    public DateTimeOffset Now { get; } = now;
    public BatchChanges Changes { get; } = new();

    /// <summary>The working copy of an organization that exists and is not deleted, or null.</summary>
    public OrganizationState? Organization(string organizationId)
    {
        if (Changes.Organizations.TryGetValue(organizationId, out var working))
        {
            return working.Status == OrganizationStatus.Deleted ? null : working;
        }
        if (!committed.TryGetValue(organizationId, out var loaded) || loaded.Status == OrganizationStatus.Deleted) return null;
        var copy = loaded.Copy();
        Changes.Organizations[organizationId] = copy;
        Changes.DeadlinesAsLoaded[organizationId] = loaded.NextDeadline();
        Rules.Advance(copy, Now, Changes);
        return copy;
    }

    public void AddOrganization(OrganizationState state) => Changes.Organizations[state.Id] = state;

    public IdempotencyRecord? FindIdempotency(string organizationId, string key) =>
        Changes.Idempotency.GetValueOrDefault((organizationId, key)) ?? lookups.Idempotency.GetValueOrDefault((organizationId, key));

    public ConsumptionRecord? FindConsumption(string organizationId, string consumptionId)
    {
        var found = Changes.Consumptions.GetValueOrDefault(consumptionId) ?? lookups.Consumptions.GetValueOrDefault(consumptionId);
        return found?.OrganizationId == organizationId ? found : null;
    }

    public HoldRow? FindSettledHold(string organizationId, string holdId)
    {
        var found = Changes.Holds.GetValueOrDefault(holdId) ?? lookups.Holds.GetValueOrDefault(holdId);
        return found?.OrganizationId == organizationId ? found : null;
    }
}
