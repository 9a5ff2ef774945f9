using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Ledger.Stores;

/// <summary>
/// Where the ledger lives. Two implementations: SQLite (embedded, one writer, so it answers loads from
/// memory) and PostgreSQL (several nodes, so it loads inside the batch's transaction under row locks).
/// </summary>
public interface ILedgerStore : IAsyncDisposable
{
    /// <summary>True when this process is the only writer, so committed state may be served from memory.</summary>
    bool IsSoleWriter { get; }

    Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Opens the batch's transaction, loads the named organizations' committed state, locked for this batch, and
    /// then finds the stored idempotency records, consumptions and holds the batch's commands name (after the
    /// locks, so that what another node committed before them is seen).
    /// </summary>
    Task<IBatchTransaction> BeginBatchAsync(IReadOnlyList<string> sortedOrganizationIds, BatchLookupRequest lookups, CancellationToken cancellationToken);

    /// <summary>Committed state of one organization, for reads; null when it does not exist.</summary>
    ValueTask<OrganizationState?> ReadOrganizationAsync(string organizationId, CancellationToken cancellationToken);

    /// <summary>
    /// Committed status of one organization, for a request that needs no more of its state (the authentication of
    /// a read of the tables: usage, ledger); null when it does not exist.
    /// </summary>
    ValueTask<OrganizationStatus?> ReadOrganizationStatusAsync(string organizationId, CancellationToken cancellationToken);

    Task<ApiKeyRecord?> FindKeyBySecretHashAsync(string secretHash, CancellationToken cancellationToken);
    Task<ApiKeyRecord?> FindKeyAsync(string organizationId, string keyId, CancellationToken cancellationToken);
    Task<IReadOnlyList<ApiKeyRecord>> ListKeysAsync(string organizationId, CancellationToken cancellationToken);
    Task<Page<OrganizationState>> ListOrganizationsAsync(string? cursor, int limit, string? query, CancellationToken cancellationToken);
    Task<Page<LedgerEntryView>> ListEntriesAsync(string organizationId, string? cursor, int limit, CancellationToken cancellationToken);
    Task<IReadOnlyList<UsageBucket>> UsageAsync(string organizationId, DateTimeOffset from, DateTimeOffset to, bool byAssistant, CancellationToken cancellationToken);

    /// <summary>Organizations with a period end, grant expiry or hold expiry at or before <paramref name="now"/>.</summary>
    Task<IReadOnlyList<string>> FindOrganizationsDueAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken);

    Task<VerifyReport> VerifyAsync(CancellationToken cancellationToken);

    Task<Page<AuditEntryView>> ListAuditAsync(string? cursor, int limit, CancellationToken cancellationToken);

    Task<string?> GetSettingAsync(string name, CancellationToken cancellationToken);

    /// <summary>Sets a setting only if it has none yet; returns the value that holds afterwards.</summary>
    Task<string> SetSettingOnceAsync(string name, string value, CancellationToken cancellationToken);
}

/// <summary>
/// The store cannot be opened as it stands (its folder is held by another process, its files do not belong together,
/// the database cannot be reached): nothing was served or written, and the message says what to do. `tally` prints
/// it as one line and exits 1, rather than crash with a stack trace.
/// </summary>
public sealed class StoreOpenException(string message, Exception? inner = null) : InvalidOperationException(message, inner);

public interface IBatchTransaction : IAsyncDisposable
{
    IReadOnlyDictionary<string, OrganizationState> Organizations { get; }

    BatchLookups Lookups { get; }

    /// <summary>
    /// Writes the batch and commits it. Returns once the writer may begin its next batch, whose decisions may build
    /// on this one's changes; the task it returns completes once this batch is durable, and only then may any of its
    /// waiters be answered. A store that returns before that (SQLite, while its journal syncs) fails the commit of
    /// every batch begun before the task failed, since those were decided on this batch's changes.
    /// </summary>
    Task<Task> CommitAsync(BatchChanges changes, CancellationToken cancellationToken);
}
