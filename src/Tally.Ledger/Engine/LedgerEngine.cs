using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Threading.Channels;
using Tally.Ledger.Model;
using Tally.Ledger.Stores;

namespace Tally.Ledger.Engine;

public sealed class LedgerEngineOptions
{
    /// <summary>
    /// Commands decided and committed together. Larger batches amortize one sync over more commands, but
    /// every waiter in a batch waits for all of its rows to be written (about 0.15 ms a consumption on SQLite
    /// with 1,000 organizations, bench/RESULTS.md), so 2,048 bounds one batch to a few hundred milliseconds
    /// under the heaviest load; with 64 clients batches stay near 64.
    /// </summary>
    public int BatchSizeMax { get; set; } = 2_048;

    /// <summary>Commands waiting for the writer. Past this the engine refuses at once (503) instead of queueing without bound.</summary>
    public int QueueCapacity { get; set; } = 32_768;

    /// <summary>How long a cached API key is trusted on a store with other writers (SPEC: revocation within 5 s everywhere).</summary>
    public TimeSpan SharedKeyCacheLifetime { get; set; } = TimeSpan.FromSeconds(4);
}

/// <summary>What the engine reports after each batch, for metrics.</summary>
public readonly record struct BatchReport(int Commands, double CommitMilliseconds, bool Committed);

/// <summary>
/// The single writer with group commit. Callers submit commands and await them; one loop drains what is
/// queued, decides each in arrival order against in-memory state, writes the batch in one transaction,
/// commits once, and only then answers every waiter. There is no timer: an idle engine waits on the queue.
/// On the embedded store the loop decides the next batch while the journal syncs the one before.
/// </summary>
public sealed class LedgerEngine : IAsyncDisposable
{
    /// <summary>Cached keys; past this the cache is emptied rather than grown, since a miss costs only one indexed read.</summary>
    private const int KeyCacheEntriesMax = 200_000;

    private readonly ILedgerStore store;
    private readonly TimeProvider time;
    private readonly LedgerEngineOptions options;
    private readonly Channel<LedgerCommand> queue;
    // Keyed by the secret itself, so that a hit costs no SHA-256 (perf showed the hash at 6% of a balance check);
    // the secrets of recently used keys are in this process's memory anyway, in its request buffers.
    private readonly ConcurrentDictionary<string, (ApiKeyRecord Key, long LoadedAt)> keyCache = new(StringComparer.Ordinal);
    private Task? writer;
    private int queued;
    private long keyCacheHits;
    private long keyRevocations;
    private long keyCacheMisses;

    public LedgerEngine(ILedgerStore store, TimeProvider time, LedgerEngineOptions? options = null)
    {
        this.store = store;
        this.time = time;
        this.options = options ?? new LedgerEngineOptions();
        queue = Channel.CreateBounded<LedgerCommand>(new BoundedChannelOptions(this.options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public ILedgerStore Store => store;
    public TimeProvider Time => time;
    public int QueueDepth => Volatile.Read(ref queued);
    public bool IsRunning => writer is { IsCompleted: false };
    public event Action<BatchReport>? BatchCompleted;
    public long KeyCacheHits => Interlocked.Read(ref keyCacheHits);
    public long KeyCacheMisses => Interlocked.Read(ref keyCacheMisses);

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await store.InitializeAsync(cancellationToken);
        writer = Task.Run(WriteLoopAsync, CancellationToken.None);
    }

    /// <summary>Stops taking commands, commits everything already queued, and returns when the writer has finished.</summary>
    public async Task StopAsync()
    {
        queue.Writer.TryComplete();
        if (writer is not null) await writer;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await store.DisposeAsync();
    }

    public Task<Outcome<ConsumptionReceipt>> ConsumeAsync(ConsumeRequest request) => Submit(new ConsumeCommand(request));
    public Task<Outcome<RefundReceipt>> RefundAsync(string organizationId, string consumptionId, long? credits, string idempotencyKey) =>
        Submit(new RefundCommand(organizationId, consumptionId, credits, idempotencyKey));
    public Task<Outcome<HoldReceipt>> HoldAsync(HoldRequest request) => Submit(new HoldCommand(request));
    public Task<Outcome<CaptureReceipt>> CaptureAsync(string organizationId, string holdId, long credits, string idempotencyKey) =>
        Submit(new CaptureCommand(organizationId, holdId, credits, idempotencyKey));
    public Task<Outcome<ReleaseReceipt>> ReleaseAsync(string organizationId, string holdId, string idempotencyKey) =>
        Submit(new ReleaseCommand(organizationId, holdId, idempotencyKey));
    /// <param name="idempotencyKey">Optional: a retry with the same key and parameters answers the organization created first.</param>
    public Task<Outcome<OrganizationView>> CreateOrganizationAsync(string name, string? externalId = null, string? idempotencyKey = null) =>
        Submit(new CreateOrganizationCommand(name, externalId, idempotencyKey));
    public Task<Outcome<OrganizationView>> UpdateOrganizationAsync(string organizationId, string? name, OrganizationStatus? status) =>
        Submit(new UpdateOrganizationCommand(organizationId, name, status));
    public Task<Outcome<bool>> DeleteOrganizationAsync(string organizationId) => Submit(new DeleteOrganizationCommand(organizationId));
    public Task<Outcome<SubscriptionView>> PutSubscriptionAsync(string organizationId, SubscriptionRequest request) =>
        Submit(new PutSubscriptionCommand(organizationId, request));
    public Task<Outcome<SubscriptionView>> CancelSubscriptionAsync(string organizationId) => Submit(new CancelSubscriptionCommand(organizationId));
    public Task<Outcome<GrantView>> GrantAsync(GrantRequest request) => Submit(new GrantCommand(request));
    public Task<Outcome<AssistantView>> AddAssistantAsync(string organizationId, string name) => Submit(new AddAssistantCommand(organizationId, name));
    public Task<Outcome<bool>> RemoveAssistantAsync(string organizationId, string assistantId) =>
        Submit(new RemoveAssistantCommand(organizationId, assistantId));
    public Task<Outcome<bool>> AdvanceAsync(string organizationId) => Submit(new AdvanceCommand(organizationId));

    /// <summary>Writes an audit record of an admin action; durable when the task completes.</summary>
    public Task<Outcome<bool>> AuditAsync(AuditEntry entry) => Submit(new AuditCommand(entry));

    /// <summary>Creates a key; the secret is returned here once and only its SHA-256 hash is stored.</summary>
    public async Task<Outcome<ApiKeyCreated>> CreateKeyAsync(string organizationId, string? name, KeyScopes scopes)
    {
        // Whole milliseconds, as the store keeps it: the answer shows the time a later read of the key shows.
        var now = WholeMilliseconds(time.GetUtcNow());
        var secret = KeyMaterial.NewSecretKey();
        var record = new ApiKeyRecord(Guid.CreateVersion7(now).ToString(), organizationId, name, KeyMaterial.NewPublicKey(),
            KeyMaterial.Sha256Hex(secret), scopes, now, null);
        var outcome = await Submit(new CreateKeyCommand(organizationId, record));
        if (!outcome.Succeeded) return Outcome<ApiKeyCreated>.Failure(outcome.Error!);
        return new(new ApiKeyCreated(record.Id, organizationId, name, record.PublicKey, secret, Names.Of(scopes), now), null);
    }

    public async Task<Outcome<ApiKeyView>> RevokeKeyAsync(string organizationId, string keyId)
    {
        var key = await store.FindKeyAsync(organizationId, keyId, CancellationToken.None);
        if (key is null) return Outcome<ApiKeyView>.Failure(LedgerError.NotFound("The key"));
        var outcome = await Submit(new RevokeKeyCommand(organizationId, key));
        if (!outcome.Succeeded) return Outcome<ApiKeyView>.Failure(outcome.Error!);
        Interlocked.Increment(ref keyRevocations);
        ForgetKey(key.Id);
        return new(outcome.Value!.ToView(), null);
    }

    /// <summary>
    /// The cached key of this secret, if it is cached and fresh: the whole lookup of a balance check, without
    /// allocating (the secret is a slice of the request's header).
    /// </summary>
    public bool TryFindCachedKey(ReadOnlySpan<char> secret, [NotNullWhen(true)] out ApiKeyRecord? key)
    {
        if (TryFindFreshKey(secret, out key))
        {
            Interlocked.Increment(ref keyCacheHits);
            return true;
        }
        return false;
    }

    /// <summary>Whether this secret's key is cached and fresh, without counting a look-up: the rate limiter's question.</summary>
    public bool IsKeyCached(ReadOnlySpan<char> secret) => TryFindFreshKey(secret, out _);

    private bool TryFindFreshKey(ReadOnlySpan<char> secret, [NotNullWhen(true)] out ApiKeyRecord? key)
    {
        if (keyCache.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(secret, out var cached)
            && (store.IsSoleWriter || time.GetElapsedTime(cached.LoadedAt) < options.SharedKeyCacheLifetime))
        {
            key = cached.Key;
            return true;
        }
        key = null;
        return false;
    }

    /// <summary>
    /// The key of this secret when <see cref="TryFindCachedKey"/> found none: by its hash from the store, if it
    /// exists and is not revoked, and then cached for the next lookup.
    /// </summary>
    public async ValueTask<ApiKeyRecord?> LoadKeyAsync(string secret, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref keyCacheMisses);
        var nowTicks = time.GetTimestamp();
        var revocationsBefore = Interlocked.Read(ref keyRevocations);
        var key = await store.FindKeyBySecretHashAsync(KeyMaterial.Sha256Hex(secret), cancellationToken);
        if (key is null || key.RevokedAt is not null)
        {
            keyCache.TryRemove(secret, out _);
            return null;
        }
        if (keyCache.Count >= KeyCacheEntriesMax) keyCache.Clear();
        keyCache[secret] = (key, nowTicks);
        // A revocation that committed while this lookup read the store may have cleared the cache before the
        // line above refilled it; checking the count afterwards closes that window.
        if (Interlocked.Read(ref keyRevocations) != revocationsBefore) keyCache.TryRemove(secret, out _);
        return key;
    }

    /// <summary>Drops a revoked key from the cache: a scan, since the cache is keyed by secrets and revocations are rare.</summary>
    private void ForgetKey(string keyId)
    {
        foreach (var entry in keyCache)
        {
            if (entry.Value.Key.Id == keyId) keyCache.TryRemove(entry);
        }
    }

    /// <summary>Committed balance, advanced to now without writing (the write happens on the next change or sweep).</summary>
    public async ValueTask<Outcome<BalanceView>> GetBalanceAsync(string organizationId, CancellationToken cancellationToken = default) =>
        await ReadLiveOrganizationAsync(organizationId, cancellationToken) is { } state
            ? new(BalanceOf(state), null)
            : Outcome<BalanceView>.Failure(LedgerError.NotFound("The organization"));

    /// <summary>The organization's committed state, or null when there is none or it was deleted (a deleted one answers 404).</summary>
    public async ValueTask<OrganizationState?> ReadLiveOrganizationAsync(string organizationId, CancellationToken cancellationToken = default) =>
        await store.ReadOrganizationAsync(organizationId, cancellationToken) is { Status: not OrganizationStatus.Deleted } state ? state : null;

    /// <summary>The balance of a state already read (by authentication), advanced to now without writing.</summary>
    public BalanceView BalanceOf(OrganizationState state)
    {
        var now = time.GetUtcNow();
        return Views.Balance(AdvancedTo(state, now), now);
    }

    /// <summary>
    /// The balance's figures of a state already read (by authentication, or a listing), advanced to now
    /// without writing: what the hot compatibility endpoints need, without building the full view.
    /// </summary>
    public BalanceFigures FiguresOf(OrganizationState state)
    {
        var now = time.GetUtcNow();
        return Views.Figures(AdvancedTo(state, now), now);
    }

    public async ValueTask<OrganizationView?> GetOrganizationAsync(string organizationId, CancellationToken cancellationToken = default)
    {
        var state = await ReadLiveOrganizationAsync(organizationId, cancellationToken);
        return state is null ? null : Views.Organization(state);
    }

    /// <summary>The store keeps milliseconds; deciding on the same precision keeps memory and disk identical.</summary>
    public static DateTimeOffset WholeMilliseconds(DateTimeOffset time) => DateTimeOffset.FromUnixTimeMilliseconds(time.ToUnixTimeMilliseconds());

    /// <summary>Committed state as it is at <paramref name="now"/>: renewals and expiries applied to a copy, nothing written.</summary>
    private static OrganizationState AdvancedTo(OrganizationState state, DateTimeOffset now)
    {
        if (!state.NeedsAdvanceAt(now)) return state;
        var copy = state.Copy();
        Rules.Advance(copy, now, new BatchChanges());
        return copy;
    }

    private Task<Outcome<T>> Submit<T>(LedgerCommand<T> command)
    {
        Interlocked.Increment(ref queued);
        if (!queue.Writer.TryWrite(command))
        {
            Interlocked.Decrement(ref queued);
            var stopping = writer is null || writer.IsCompleted || queue.Reader.Completion.IsCompleted;
            return Task.FromResult(Outcome<T>.Failure(new LedgerError(ErrorCode.Overloaded,
                stopping ? "The ledger is shutting down; retry on another node or later." : "The ledger is saturated; retry shortly.")));
        }
        return command.Outcome;
    }

    /// <summary>
    /// Takes batches one after another. A store may return from a commit while it is still syncing (SQLite): the
    /// next batch is then looked up and decided meanwhile, and the previous batch's waiters are answered by
    /// <see cref="AnswerWhenDurableAsync"/> once it is durable. The last batch is answered before the loop ends.
    /// </summary>
    private async Task WriteLoopAsync()
    {
        var answered = Task.CompletedTask;
        while (await queue.Reader.WaitToReadAsync())
        {
            // A new list each time: the previous one may still be waiting for its answers.
            var batch = new List<LedgerCommand>(Math.Min(options.BatchSizeMax, queue.Reader.Count));
            while (batch.Count < options.BatchSizeMax && queue.Reader.TryRead(out var command)) batch.Add(command);
            Interlocked.Add(ref queued, -batch.Count);
            answered = await ProcessBatchAsync(batch);
        }
        await answered;
    }

    /// <summary>Decides and commits one batch; returns the task that answers its waiters once it is durable.</summary>
    private async Task<Task> ProcessBatchAsync(List<LedgerCommand> batch)
    {
        var started = Stopwatch.GetTimestamp();
        Task durable;
        try
        {
            var organizationIds = batch.Select(command => command.OrganizationId).OfType<string>()
                .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            await using var transaction = await store.BeginBatchAsync(organizationIds, LookupRequest(batch), CancellationToken.None);
            var context = new DecisionContext(WholeMilliseconds(time.GetUtcNow()), transaction.Organizations, transaction.Lookups);
            foreach (var command in batch) command.Decide(context);
            durable = await transaction.CommitAsync(context.Changes, CancellationToken.None);
        }
        catch (Exception exception)
        {
            Fail(batch, started, exception);
            return Task.CompletedTask;
        }
        return AnswerWhenDurableAsync(batch, durable, started);
    }

    private async Task AnswerWhenDurableAsync(List<LedgerCommand> batch, Task durable, long started)
    {
        try
        {
            await durable;
        }
        catch (Exception exception)
        {
            Fail(batch, started, exception);
            return;
        }
        foreach (var command in batch) command.Complete();
        BatchCompleted?.Invoke(new BatchReport(batch.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds, true));
    }

    /// <summary>
    /// A failed commit (disk full, I/O error, lost connection) fails the whole batch; nothing of it was published, so
    /// memory still matches what is on disk, and the next batch not decided on it starts clean.
    /// </summary>
    private void Fail(List<LedgerCommand> batch, long started, Exception exception)
    {
        // Not "nothing was applied": a commit whose answer was lost (PostgreSQL's connection cut after COMMIT was sent)
        // may have been stored. The idempotency key makes the retry safe either way: a stored change is replayed.
        var error = new LedgerError(ErrorCode.StoreFailure,
            "The change may not have been stored: the store failed or did not confirm the commit. Retry with the same idempotency key; a change that was stored is answered as a replay, never applied twice.");
        foreach (var command in batch) command.Fail(error);
        BatchCompleted?.Invoke(new BatchReport(batch.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds, false));
        LastFailure = exception;
    }

    /// <summary>The last store failure, for logs and readiness.</summary>
    public Exception? LastFailure { get; private set; }

    private static BatchLookupRequest LookupRequest(List<LedgerCommand> batch)
    {
        var keys = new List<(string, string)>();
        var consumptions = new List<(string, string)>();
        var holds = new List<(string, string)>();
        var assistants = false;
        foreach (var command in batch)
        {
            assistants |= command.ChangesAssistants;
            if (command is { IdempotencyScope: { } scope, IdempotencyKey: { } key }) keys.Add((scope, key));
            if (command.OrganizationId is not { } organizationId) continue;
            if (command.ConsumptionId is { } consumptionId) consumptions.Add((organizationId, consumptionId));
            if (command.HoldId is { } holdId) holds.Add((organizationId, holdId));
        }
        return new BatchLookupRequest(keys, consumptions, holds, assistants);
    }
}

