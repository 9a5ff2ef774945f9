using System.Data.Common;
using System.Text.Json;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Ledger.Stores;

/// <summary>
/// The SQL both stores share: loading an organization's state, writing a batch, the reads and the verify
/// pass. The subclasses differ only in how they connect, lock and cache.
/// </summary>
public abstract partial class RelationalStore : ILedgerStore
{
    /// <summary>Organizations one sweep query returns; the sweep asks again until none are due.</summary>
    public const int DueOrganizationsPageMax = 1_000;

    /// <summary>Differences a verify pass lists in full; past this it only counts them.</summary>
    private const int DifferencesListedMax = 100;

    public abstract bool IsSoleWriter { get; }
    public abstract Task InitializeAsync(CancellationToken cancellationToken);
    public abstract Task<IBatchTransaction> BeginBatchAsync(IReadOnlyList<string> sortedOrganizationIds, CancellationToken cancellationToken);
    public abstract ValueTask<OrganizationState?> ReadOrganizationAsync(string organizationId, CancellationToken cancellationToken);
    public abstract ValueTask DisposeAsync();

    /// <summary>A connection for reads, outside the writer's transaction.</summary>
    protected abstract Task<DbConnection> OpenReadConnectionAsync(CancellationToken cancellationToken);

    /// <summary>The dialect's auto-numbered primary key column type.</summary>
    protected abstract string IdentityColumn { get; }

    /// <summary>The dialect's clause for tables clustered on their primary key; none by default.</summary>
    protected virtual string WithoutRowIdClause => "";

    protected IEnumerable<string> MigrationStatements(int version) =>
        Schema.Migrations.Single(migration => migration.Version == version).Statements
            .Select(sql => sql.Replace("{identity}", IdentityColumn).Replace("{without_rowid}", WithoutRowIdClause));

    protected virtual DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }
        return command;
    }

    protected async Task ExecuteAsync(DbConnection connection, DbTransaction? transaction, string sql, CancellationToken cancellationToken, params (string, object?)[] parameters)
    {
        var command = Command(connection, transaction, sql, parameters);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

    /// <summary>Disposes a command unless the subclass keeps it prepared for reuse.</summary>
    protected virtual ValueTask ReturnAsync(DbCommand command) => command.DisposeAsync();

    protected static long Long(DbDataReader reader, int ordinal) => Convert.ToInt64(reader.GetValue(ordinal));
    protected static long? NullableLong(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : Convert.ToInt64(reader.GetValue(ordinal));
    protected static string? NullableString(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);
    protected static DateTimeOffset Time(long milliseconds) => DateTimeOffset.FromUnixTimeMilliseconds(milliseconds);
    protected static DateTimeOffset? Time(long? milliseconds) => milliseconds is { } value ? Time(value) : null;
    protected static long Milliseconds(DateTimeOffset time) => time.ToUnixTimeMilliseconds();
    protected static long? Milliseconds(DateTimeOffset? time) => time?.ToUnixTimeMilliseconds();

    /// <summary>Loads one organization's state: its row, unexpired grants, open holds and assistants.</summary>
    protected async Task<OrganizationState?> LoadOrganizationAsync(DbConnection connection, DbTransaction? transaction, string organizationId, CancellationToken cancellationToken)
    {
        OrganizationState? state = null;
        var command = Command(connection, transaction,
            """
            SELECT id, name, external_id, status, created_at, plan, credits_per_period, period, anchor, rollover_max,
                   period_start, period_end, used_in_period
            FROM organizations WHERE id = @id
            """, ("@id", organizationId));
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken)) return null;
            Names.TryParseStatus(reader.GetString(3), out var status);
            state = new OrganizationState
            {
                Id = reader.GetString(0),
                Name = reader.GetString(1),
                ExternalId = NullableString(reader, 2),
                Status = status,
                CreatedAt = Time(Long(reader, 4)),
                UsedInPeriod = Long(reader, 12),
            };
            if (reader.IsDBNull(5))
            {
                state.CancelledPeriodStart = Time(NullableLong(reader, 10));
            }
            else
            {
                Names.TryParsePeriod(reader.GetString(7), out var period);
                state.Subscription = new SubscriptionState
                {
                    Plan = reader.GetString(5),
                    CreditsPerPeriod = NullableLong(reader, 6),
                    Period = period,
                    Anchor = Time(Long(reader, 8)),
                    RolloverMax = Long(reader, 9),
                    PeriodStart = Time(Long(reader, 10)),
                    PeriodEnd = Time(Long(reader, 11)),
                };
            }
        }
        finally
        {
            await ReturnAsync(command);
        }
        await LoadGrantsAsync(connection, transaction, state, cancellationToken);
        await LoadHoldsAsync(connection, transaction, state, cancellationToken);
        await LoadAssistantsAsync(connection, transaction, state, cancellationToken);
        return state;
    }

    private async Task LoadGrantsAsync(DbConnection connection, DbTransaction? transaction, OrganizationState state, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction,
            """
            SELECT id, credits, remaining, source, priority, effective_at, expires_at, created_at, period_start
            FROM grants WHERE organization_id = @id AND expired = 0 ORDER BY created_at, id
            """, ("@id", state.Id));
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                Names.TryParseSource(reader.GetString(3), out var source);
                state.Grants.Add(new GrantState
                {
                    Id = reader.GetString(0),
                    Credits = Long(reader, 1),
                    Remaining = Long(reader, 2),
                    Source = source,
                    Priority = (int)Long(reader, 4),
                    EffectiveAt = Time(Long(reader, 5)),
                    ExpiresAt = Time(NullableLong(reader, 6)),
                    CreatedAt = Time(Long(reader, 7)),
                    PeriodStart = Time(NullableLong(reader, 8)),
                });
            }
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

    private async Task LoadHoldsAsync(DbConnection connection, DbTransaction? transaction, OrganizationState state, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction,
            """
            SELECT id, credits, expires_at, created_at, allocations, assistant_id, identifier
            FROM holds WHERE organization_id = @id AND status = 'open'
            """, ("@id", state.Id));
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var hold = ReadHold(reader, 0);
                state.OpenHolds[hold.Id] = hold;
            }
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

    private static HoldState ReadHold(DbDataReader reader, int first) => new(
        reader.GetString(first), Long(reader, first + 1), Time(Long(reader, first + 2)), Time(Long(reader, first + 3)),
        JsonSerializer.Deserialize(reader.GetString(first + 4), LedgerJson.Default.AllocationArray) ?? [],
        NullableString(reader, first + 5), NullableString(reader, first + 6));

    private async Task LoadAssistantsAsync(DbConnection connection, DbTransaction? transaction, OrganizationState state, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction,
            "SELECT id, name, created_at FROM assistants WHERE organization_id = @id AND deleted_at IS NULL ORDER BY created_at, id",
            ("@id", state.Id));
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                state.Assistants.Add(new AssistantState(reader.GetString(0), reader.GetString(1), Time(Long(reader, 2))));
            }
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

    /// <summary>Reads the stored idempotency records, consumptions and holds that a batch's commands name.</summary>
    protected async Task<BatchLookups> LookupAsync(DbConnection connection, DbTransaction? transaction, BatchLookupRequest request, CancellationToken cancellationToken)
    {
        var lookups = new BatchLookups();
        foreach (var (organizationId, key) in request.IdempotencyKeys)
        {
            var command = Command(connection, transaction,
                "SELECT fingerprint, result, created_at FROM idempotency_keys WHERE organization_id = @organization AND key = @key",
                ("@organization", organizationId), ("@key", key));
            try
            {
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                if (await reader.ReadAsync(cancellationToken))
                {
                    lookups.Idempotency[(organizationId, key)] =
                        new IdempotencyRecord(organizationId, key, reader.GetString(0), reader.GetString(1), Time(Long(reader, 2)));
                }
            }
            finally
            {
                await ReturnAsync(command);
            }
        }
        foreach (var (organizationId, consumptionId) in request.Consumptions)
        {
            var consumption = await FindConsumptionAsync(connection, transaction, organizationId, consumptionId, cancellationToken);
            if (consumption is not null) lookups.Consumptions[consumption.Id] = consumption;
        }
        foreach (var (organizationId, holdId) in request.Holds)
        {
            var hold = await FindHoldAsync(connection, transaction, organizationId, holdId, cancellationToken);
            if (hold is not null) lookups.Holds[holdId] = hold;
        }
        return lookups;
    }

    private async Task<ConsumptionRecord?> FindConsumptionAsync(DbConnection connection, DbTransaction? transaction, string organizationId, string consumptionId, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction,
            """
            SELECT id, credits, refunded, allocations, period_start, assistant_id, identifier, hold_id, created_at
            FROM consumptions WHERE id = @id AND organization_id = @organization
            """, ("@id", consumptionId), ("@organization", organizationId));
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken)) return null;
            return new ConsumptionRecord
            {
                Id = reader.GetString(0),
                OrganizationId = organizationId,
                Credits = Long(reader, 1),
                Refunded = Long(reader, 2),
                Allocations = JsonSerializer.Deserialize(reader.GetString(3), LedgerJson.Default.AllocationArray) ?? [],
                PeriodStart = Time(NullableLong(reader, 4)),
                AssistantId = NullableString(reader, 5),
                Identifier = NullableString(reader, 6),
                HoldId = NullableString(reader, 7),
                CreatedAt = Time(Long(reader, 8)),
            };
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

    private async Task<HoldRow?> FindHoldAsync(DbConnection connection, DbTransaction? transaction, string organizationId, string holdId, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction,
            """
            SELECT id, credits, expires_at, created_at, allocations, assistant_id, identifier, status, captured, settled_at
            FROM holds WHERE id = @id AND organization_id = @organization
            """, ("@id", holdId), ("@organization", organizationId));
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken)) return null;
            var status = Enum.Parse<HoldStatus>(reader.GetString(7), ignoreCase: true);
            return new HoldRow(organizationId, ReadHold(reader, 0), status, Long(reader, 8), Time(NullableLong(reader, 9)));
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

    /// <summary>Writes everything one batch changed, inside the caller's transaction.</summary>
    protected async Task WriteChangesAsync(DbConnection connection, DbTransaction? transaction, BatchChanges changes, CancellationToken cancellationToken)
    {
        foreach (var state in changes.Organizations.Values) await WriteOrganizationAsync(connection, transaction, state, cancellationToken);
        foreach (var (organizationId, grant) in changes.Grants.Values) await WriteGrantAsync(connection, transaction, organizationId, grant, cancellationToken);
        foreach (var hold in changes.Holds.Values) await WriteHoldAsync(connection, transaction, hold, cancellationToken);
        foreach (var consumption in changes.Consumptions.Values) await WriteConsumptionAsync(connection, transaction, consumption, cancellationToken);
        foreach (var entry in changes.Entries)
        {
            await ExecuteAsync(connection, transaction,
                """
                INSERT INTO ledger_entries (organization_id, kind, grant_id, credits, reference_id, created_at)
                VALUES (@organization, @kind, @grant, @credits, @reference, @created)
                """, cancellationToken,
                ("@organization", entry.OrganizationId), ("@kind", Names.Of(entry.Kind)), ("@grant", entry.GrantId),
                ("@credits", entry.Credits), ("@reference", entry.ReferenceId), ("@created", Milliseconds(entry.CreatedAt)));
        }
        foreach (var record in changes.Idempotency.Values)
        {
            await ExecuteAsync(connection, transaction,
                "INSERT INTO idempotency_keys (organization_id, key, fingerprint, result, created_at) VALUES (@organization, @key, @fingerprint, @result, @created)",
                cancellationToken, ("@organization", record.OrganizationId), ("@key", record.Key), ("@fingerprint", record.Fingerprint),
                ("@result", record.Result), ("@created", Milliseconds(record.CreatedAt)));
        }
        await WriteAssistantsAndKeysAsync(connection, transaction, changes, cancellationToken);
        foreach (var audit in changes.AuditEntries) await WriteAuditAsync(connection, transaction, audit, cancellationToken);
    }

    private Task WriteOrganizationAsync(DbConnection connection, DbTransaction? transaction, OrganizationState state, CancellationToken cancellationToken)
    {
        var subscription = state.Subscription;
        return ExecuteAsync(connection, transaction,
            """
            INSERT INTO organizations (id, name, external_id, status, created_at, plan, credits_per_period, period, anchor,
                rollover_max, period_start, period_end, used_in_period, next_deadline)
            VALUES (@id, @name, @external, @status, @created, @plan, @perPeriod, @period, @anchor, @rollover, @start, @end, @used, @deadline)
            ON CONFLICT (id) DO UPDATE SET name = excluded.name, external_id = excluded.external_id, status = excluded.status,
                plan = excluded.plan, credits_per_period = excluded.credits_per_period, period = excluded.period,
                anchor = excluded.anchor, rollover_max = excluded.rollover_max, period_start = excluded.period_start,
                period_end = excluded.period_end, used_in_period = excluded.used_in_period, next_deadline = excluded.next_deadline
            """, cancellationToken,
            ("@id", state.Id), ("@name", state.Name), ("@external", state.ExternalId), ("@status", Names.Of(state.Status)),
            ("@created", Milliseconds(state.CreatedAt)), ("@plan", subscription?.Plan), ("@perPeriod", subscription?.CreditsPerPeriod),
            ("@period", subscription is null ? null : Names.Of(subscription.Period)), ("@anchor", Milliseconds(subscription?.Anchor)),
            ("@rollover", subscription?.RolloverMax), ("@start", Milliseconds(state.UsagePeriodStart)),
            ("@end", Milliseconds(subscription?.PeriodEnd)), ("@used", state.UsedInPeriod), ("@deadline", Milliseconds(NextDeadline(state))));
    }

    /// <summary>The next instant at which time alone changes this organization: what the sweep looks for.</summary>
    internal static DateTimeOffset? NextDeadline(OrganizationState state)
    {
        if (state.Status == OrganizationStatus.Deleted) return null;
        DateTimeOffset? next = state.Subscription?.PeriodEnd;
        foreach (var grant in state.Grants)
        {
            if (grant.ExpiresAt is { } expiresAt && !grant.Expired && (next is null || expiresAt < next)) next = expiresAt;
        }
        foreach (var hold in state.OpenHolds.Values)
        {
            if (next is null || hold.ExpiresAt < next) next = hold.ExpiresAt;
        }
        return next;
    }

    private Task WriteGrantAsync(DbConnection connection, DbTransaction? transaction, string organizationId, GrantState grant, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, transaction,
            """
            INSERT INTO grants (id, organization_id, credits, remaining, source, priority, effective_at, expires_at, created_at, period_start, expired)
            VALUES (@id, @organization, @credits, @remaining, @source, @priority, @effective, @expires, @created, @periodStart, @expired)
            ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining, expired = excluded.expired
            """, cancellationToken,
            ("@id", grant.Id), ("@organization", organizationId), ("@credits", grant.Credits), ("@remaining", grant.Remaining),
            ("@source", Names.Of(grant.Source)), ("@priority", (long)grant.Priority), ("@effective", Milliseconds(grant.EffectiveAt)),
            ("@expires", Milliseconds(grant.ExpiresAt)), ("@created", Milliseconds(grant.CreatedAt)),
            ("@periodStart", Milliseconds(grant.PeriodStart)), ("@expired", grant.Expired ? 1L : 0L));

    private Task WriteHoldAsync(DbConnection connection, DbTransaction? transaction, HoldRow row, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, transaction,
            """
            INSERT INTO holds (id, organization_id, credits, status, expires_at, created_at, allocations, assistant_id, identifier, captured, settled_at)
            VALUES (@id, @organization, @credits, @status, @expires, @created, @allocations, @assistant, @identifier, @captured, @settled)
            ON CONFLICT (id) DO UPDATE SET status = excluded.status, captured = excluded.captured, settled_at = excluded.settled_at
            """, cancellationToken,
            ("@id", row.Hold.Id), ("@organization", row.OrganizationId), ("@credits", row.Hold.Credits), ("@status", Names.Of(row.Status)),
            ("@expires", Milliseconds(row.Hold.ExpiresAt)), ("@created", Milliseconds(row.Hold.CreatedAt)),
            ("@allocations", JsonSerializer.Serialize(row.Hold.Allocations, LedgerJson.Default.AllocationArray)),
            ("@assistant", row.Hold.AssistantId), ("@identifier", row.Hold.Identifier), ("@captured", row.Captured),
            ("@settled", Milliseconds(row.SettledAt)));

    private Task WriteConsumptionAsync(DbConnection connection, DbTransaction? transaction, ConsumptionRecord consumption, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, transaction,
            """
            INSERT INTO consumptions (id, organization_id, credits, refunded, allocations, period_start, assistant_id, identifier, metadata, hold_id, created_at)
            VALUES (@id, @organization, @credits, @refunded, @allocations, @periodStart, @assistant, @identifier, @metadata, @hold, @created)
            ON CONFLICT (id) DO UPDATE SET refunded = excluded.refunded
            """, cancellationToken,
            ("@id", consumption.Id), ("@organization", consumption.OrganizationId), ("@credits", consumption.Credits),
            ("@refunded", consumption.Refunded), ("@allocations", JsonSerializer.Serialize(consumption.Allocations, LedgerJson.Default.AllocationArray)),
            ("@periodStart", Milliseconds(consumption.PeriodStart)), ("@assistant", consumption.AssistantId), ("@identifier", consumption.Identifier),
            ("@metadata", consumption.Metadata is null ? null : JsonSerializer.Serialize(consumption.Metadata, LedgerJson.Default.DictionaryStringString)),
            ("@hold", consumption.HoldId), ("@created", Milliseconds(consumption.CreatedAt)));

    private async Task WriteAssistantsAndKeysAsync(DbConnection connection, DbTransaction? transaction, BatchChanges changes, CancellationToken cancellationToken)
    {
        foreach (var (organizationId, assistant) in changes.AssistantsAdded)
        {
            await ExecuteAsync(connection, transaction,
                "INSERT INTO assistants (id, organization_id, name, created_at) VALUES (@id, @organization, @name, @created)", cancellationToken,
                ("@id", assistant.Id), ("@organization", organizationId), ("@name", assistant.Name), ("@created", Milliseconds(assistant.CreatedAt)));
        }
        foreach (var (organizationId, assistantId, deletedAt) in changes.AssistantsRemoved)
        {
            await ExecuteAsync(connection, transaction,
                "UPDATE assistants SET deleted_at = @deleted WHERE id = @id AND organization_id = @organization", cancellationToken,
                ("@deleted", Milliseconds(deletedAt)), ("@id", assistantId), ("@organization", organizationId));
        }
        foreach (var key in changes.KeysAdded)
        {
            await ExecuteAsync(connection, transaction,
                """
                INSERT INTO api_keys (id, organization_id, name, public_key, secret_hash, scopes, created_at)
                VALUES (@id, @organization, @name, @public, @hash, @scopes, @created)
                """, cancellationToken,
                ("@id", key.Id), ("@organization", key.OrganizationId), ("@name", key.Name), ("@public", key.PublicKey),
                ("@hash", key.SecretHash), ("@scopes", (long)key.Scopes), ("@created", Milliseconds(key.CreatedAt)));
        }
        foreach (var (keyId, revokedAt) in changes.KeysRevoked)
        {
            await ExecuteAsync(connection, transaction, "UPDATE api_keys SET revoked_at = @revoked WHERE id = @id AND revoked_at IS NULL",
                cancellationToken, ("@revoked", Milliseconds(revokedAt)), ("@id", keyId));
        }
    }
}
