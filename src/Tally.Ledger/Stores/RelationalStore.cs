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
    public const int DifferencesListedMax = 100;

    public abstract bool IsSoleWriter { get; }
    public abstract Task InitializeAsync(CancellationToken cancellationToken);
    public abstract Task<IBatchTransaction> BeginBatchAsync(IReadOnlyList<string> sortedOrganizationIds, BatchLookupRequest lookups, CancellationToken cancellationToken);
    public abstract ValueTask<OrganizationState?> ReadOrganizationAsync(string organizationId, CancellationToken cancellationToken);

    /// <summary>The status out of the whole state, which a store that keeps states in memory reads for nothing.</summary>
    public virtual async ValueTask<OrganizationStatus?> ReadOrganizationStatusAsync(string organizationId, CancellationToken cancellationToken) =>
        (await ReadOrganizationAsync(organizationId, cancellationToken))?.Status;

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

    /// <summary>
    /// A command with untyped parameters: a null takes its type from where the SQL uses it, so shared SQL must
    /// give every nullable parameter such a place (CAST(@x AS BIGINT) IS NULL, never a bare @x IS NULL, which
    /// PostgreSQL cannot type).
    /// </summary>
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

    /// <summary>Runs one statement.</summary>
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

    /// <summary>Runs a query on the given connection (inside its transaction, if any) and hands each row to <paramref name="read"/>.</summary>
    protected async Task ReadRowsAsync(DbConnection connection, DbTransaction? transaction, string sql, Action<DbDataReader> read,
        CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        var command = Command(connection, transaction, sql, parameters);
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken)) read(reader);
        }
        finally
        {
            await ReturnAsync(command);
        }
    }

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
        OrganizationState? found = null;
        await ReadRowsAsync(connection, transaction, $"SELECT {OrganizationColumns} FROM organizations WHERE id = @id",
            reader => found = ReadOrganization(reader), cancellationToken, ("@id", organizationId));
        if (found is not { } state) return null;
        await ReadRowsAsync(connection, transaction,
            $"SELECT {GrantColumns} FROM grants WHERE organization_id = @id AND expired = 0 ORDER BY created_at, id",
            reader => state.Grants.Add(ReadGrant(reader, 0)), cancellationToken, ("@id", organizationId));
        await ReadRowsAsync(connection, transaction, $"SELECT {OpenHoldColumns} FROM holds WHERE organization_id = @id AND status = 'open'",
            reader =>
            {
                var hold = ReadHold(reader, 0);
                state.OpenHolds[hold.Id] = hold;
            },
            cancellationToken, ("@id", organizationId));
        await ReadRowsAsync(connection, transaction,
            $"SELECT {AssistantColumns} FROM assistants WHERE organization_id = @id AND deleted_at IS NULL ORDER BY created_at, id",
            reader => state.Assistants.Add(ReadAssistant(reader, 0)), cancellationToken, ("@id", organizationId));
        return state;
    }

    // The columns each load reads, and the mapping of one row, are shared with stores that load many
    // organizations in one round trip (PostgreSQL), so that both read exactly the same thing.
    protected const string OrganizationColumns =
        "id, name, external_id, status, created_at, plan, credits_per_period, period, anchor, rollover_max, period_start, period_end, used_in_period";
    protected const string GrantColumns = "id, credits, remaining, source, priority, effective_at, expires_at, created_at, period_start";
    protected const string OpenHoldColumns = "id, credits, expires_at, created_at, allocations, assistant_id, identifier";
    protected const string AssistantColumns = "id, name, created_at";
    protected const string IdempotencyColumns = "fingerprint, result, created_at";
    protected const string ConsumptionColumns = "id, credits, refunded, allocations, period_start, assistant_id, identifier, hold_id, created_at";
    protected const string HoldRowColumns = OpenHoldColumns + ", status, captured, settled_at";

    protected static OrganizationStatus ReadStatus(DbDataReader reader, int ordinal)
    {
        Names.TryParseStatus(reader.GetString(ordinal), out var status);
        return status;
    }

    protected static OrganizationState ReadOrganization(DbDataReader reader)
    {
        var state = new OrganizationState
        {
            Id = reader.GetString(0),
            Name = reader.GetString(1),
            ExternalId = NullableString(reader, 2),
            Status = ReadStatus(reader, 3),
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
        return state;
    }

    protected static GrantState ReadGrant(DbDataReader reader, int first)
    {
        Names.TryParseSource(reader.GetString(first + 3), out var source);
        return new GrantState
        {
            Id = reader.GetString(first),
            Credits = Long(reader, first + 1),
            Remaining = Long(reader, first + 2),
            Source = source,
            Priority = (int)Long(reader, first + 4),
            EffectiveAt = Time(Long(reader, first + 5)),
            ExpiresAt = Time(NullableLong(reader, first + 6)),
            CreatedAt = Time(Long(reader, first + 7)),
            PeriodStart = Time(NullableLong(reader, first + 8)),
        };
    }

    protected static AssistantState ReadAssistant(DbDataReader reader, int first) =>
        new(reader.GetString(first), reader.GetString(first + 1), Time(Long(reader, first + 2)));

    protected static IdempotencyRecord ReadIdempotency(DbDataReader reader, int first, string organizationId, string key) =>
        new(organizationId, key, reader.GetString(first), reader.GetString(first + 1), Time(Long(reader, first + 2)));

    protected static ConsumptionRecord ReadConsumption(DbDataReader reader, int first, string organizationId) => new()
    {
        Id = reader.GetString(first),
        OrganizationId = organizationId,
        Credits = Long(reader, first + 1),
        Refunded = Long(reader, first + 2),
        Allocations = JsonSerializer.Deserialize(reader.GetString(first + 3), LedgerJson.Default.AllocationArray) ?? [],
        PeriodStart = Time(NullableLong(reader, first + 4)),
        AssistantId = NullableString(reader, first + 5),
        Identifier = NullableString(reader, first + 6),
        HoldId = NullableString(reader, first + 7),
        CreatedAt = Time(Long(reader, first + 8)),
    };

    protected static HoldRow ReadHoldRow(DbDataReader reader, int first, string organizationId)
    {
        var status = Enum.Parse<HoldStatus>(reader.GetString(first + 7), ignoreCase: true);
        return new HoldRow(organizationId, ReadHold(reader, first), status, Long(reader, first + 8), Time(NullableLong(reader, first + 9)));
    }

    protected static HoldState ReadHold(DbDataReader reader, int first) => new(
        reader.GetString(first), Long(reader, first + 1), Time(Long(reader, first + 2)), Time(Long(reader, first + 3)),
        JsonSerializer.Deserialize(reader.GetString(first + 4), LedgerJson.Default.AllocationArray) ?? [],
        NullableString(reader, first + 5), NullableString(reader, first + 6));

    /// <summary>
    /// Idempotency keys looked up in one statement: point lookups joined by UNION ALL, each on the primary key,
    /// in statements of 32, 16, … 1 keys (SQLite allows 500 terms in one compound SELECT, and finds each
    /// named parameter by a linear search, so smaller statements bind faster).
    /// </summary>
    private const int KeysPerLookupMax = 32;

    private static readonly string[] LookupParameterNames = Enumerable.Range(0, KeysPerLookupMax * 2).Select(index => "@k" + index).ToArray();

    private static readonly string[] KeyLookupSqlBySize = Enumerable.Range(0, KeysPerLookupMax + 1).Select(count => string.Join(" UNION ALL ",
        Enumerable.Range(0, count).Select(index =>
            $"SELECT organization_id, key, {IdempotencyColumns} FROM idempotency_keys WHERE organization_id = @k{index * 2} AND key = @k{index * 2 + 1}"))).ToArray();

    private static string KeyLookupSql(int count) => KeyLookupSqlBySize[count];

    /// <summary>
    /// How many of the remaining rows one statement takes: the largest power of two up to the maximum, so that a
    /// few prepared statements of fixed shape serve every batch size.
    /// </summary>
    protected static int StatementSize(int remaining, int maximum) =>
        (int)Math.Min(maximum, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)remaining + 1) / 2);

    /// <summary>Reads the stored idempotency records, consumptions and holds that a batch's commands name.</summary>
    protected async Task<BatchLookups> LookupAsync(DbConnection connection, DbTransaction? transaction, BatchLookupRequest request, CancellationToken cancellationToken)
    {
        var lookups = new BatchLookups();
        var keys = request.IdempotencyKeys;
        for (var start = 0; start < keys.Count;)
        {
            var count = StatementSize(keys.Count - start, KeysPerLookupMax);
            var parameters = new (string, object?)[count * 2];
            for (var index = 0; index < count; index++)
            {
                parameters[index * 2] = (LookupParameterNames[index * 2], keys[start + index].OrganizationId);
                parameters[index * 2 + 1] = (LookupParameterNames[index * 2 + 1], keys[start + index].Key);
            }
            await ReadRowsAsync(connection, transaction, KeyLookupSql(count), reader =>
            {
                var record = ReadIdempotency(reader, 2, reader.GetString(0), reader.GetString(1));
                lookups.Idempotency[(record.OrganizationId, record.Key)] = record;
            }, cancellationToken, parameters);
            start += count;
        }
        foreach (var (organizationId, consumptionId) in request.Consumptions)
        {
            await ReadRowsAsync(connection, transaction, $"SELECT {ConsumptionColumns} FROM consumptions WHERE id = @id AND organization_id = @organization",
                reader => lookups.Consumptions[consumptionId] = ReadConsumption(reader, 0, organizationId),
                cancellationToken, ("@id", consumptionId), ("@organization", organizationId));
        }
        foreach (var (organizationId, holdId) in request.Holds)
        {
            await ReadRowsAsync(connection, transaction, $"SELECT {HoldRowColumns} FROM holds WHERE id = @id AND organization_id = @organization",
                reader => lookups.Holds[holdId] = ReadHoldRow(reader, 0, organizationId),
                cancellationToken, ("@id", holdId), ("@organization", organizationId));
        }
        return lookups;
    }

    /// <summary>Whether a column holds text or a whole number: the only two types the schema uses.</summary>
    protected enum ColumnType { Text, Integer }

    /// <summary>
    /// One table's insert-or-update, written once for both stores: its columns and the clause that makes it an
    /// upsert. SQLite's projector writes the rows in multi-row statements; PostgreSQL sends all of a batch's rows
    /// for the table as arrays in one statement. Row values are given in column order.
    /// </summary>
    protected sealed class TableWrite
    {
        public TableWrite(string table, string conflict, params (string Name, ColumnType Type)[] columns)
        {
            Table = table;
            Conflict = conflict;
            Columns = columns;
            ParameterNames = Array.ConvertAll(columns, column => "@" + column.Name);
            ColumnList = string.Join(", ", columns.Select(column => column.Name));
        }

        public string Table { get; }
        public string Conflict { get; }
        public (string Name, ColumnType Type)[] Columns { get; }
        public string[] ParameterNames { get; }
        public string ColumnList { get; }
    }

    private static readonly (string Name, ColumnType Type)[] OrganizationColumnTypes =
    [
        ("id", ColumnType.Text), ("name", ColumnType.Text), ("external_id", ColumnType.Text), ("status", ColumnType.Text),
        ("created_at", ColumnType.Integer), ("plan", ColumnType.Text), ("credits_per_period", ColumnType.Integer), ("period", ColumnType.Text),
        ("anchor", ColumnType.Integer), ("rollover_max", ColumnType.Integer), ("period_start", ColumnType.Integer),
        ("period_end", ColumnType.Integer), ("used_in_period", ColumnType.Integer), ("next_deadline", ColumnType.Integer),
    ];

    private const string OrganizationUpdates =
        """
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, external_id = excluded.external_id, status = excluded.status,
            plan = excluded.plan, credits_per_period = excluded.credits_per_period, period = excluded.period,
            anchor = excluded.anchor, rollover_max = excluded.rollover_max, period_start = excluded.period_start,
            period_end = excluded.period_end, used_in_period = excluded.used_in_period
        """;

    // Most batches change an organization's usage and nothing the sweep's index on next_deadline reads; naming
    // next_deadline in the update would rewrite that index entry anyway (see GrantsSpentWrite), so it is named
    // only for the organizations whose deadline moved, or that are new.
    private static readonly TableWrite OrganizationsWrite = new("organizations", OrganizationUpdates, OrganizationColumnTypes);

    private static readonly TableWrite OrganizationsDeadlineWrite = new("organizations",
        OrganizationUpdates + ", next_deadline = excluded.next_deadline", OrganizationColumnTypes);

    private static readonly (string Name, ColumnType Type)[] GrantColumnTypes =
    [
        ("id", ColumnType.Text), ("organization_id", ColumnType.Text), ("credits", ColumnType.Integer), ("remaining", ColumnType.Integer),
        ("source", ColumnType.Text), ("priority", ColumnType.Integer), ("effective_at", ColumnType.Integer), ("expires_at", ColumnType.Integer),
        ("created_at", ColumnType.Integer), ("period_start", ColumnType.Integer), ("expired", ColumnType.Integer),
    ];

    // A grant is written on every batch that spends from it, and usually only its remaining credits changed.
    // Naming `expired` in the update would rewrite the grant's entries in both indexes on `expired` even when the
    // value is the same (SQLite rewrites an index whenever the update names one of its columns), so the grants
    // that did not expire are written by an upsert that updates `remaining` alone. A grant never un-expires, so
    // for these the stored `expired` is already 0.
    private static readonly TableWrite GrantsSpentWrite = new("grants",
        "ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining", GrantColumnTypes);

    // Written by the builds before allowances could be resized, for expired grants; a journal of theirs is read as
    // GrantsWholeWrite (their rows hold the grant's whole state, with the credits it always had).
    private static readonly TableWrite GrantsExpiredWrite = new("grants",
        "ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining, expired = excluded.expired", GrantColumnTypes);

    // Grants that expired, and allowances resized within their period (their credits change). Neither credits nor
    // expires_at is in an index. A table write of its own, numbered after the others: a build before it meets a
    // number it does not know in a journal of this one, and refuses it, rather than miss the credits.
    private static readonly TableWrite GrantsWholeWrite = new("grants",
        "ON CONFLICT (id) DO UPDATE SET credits = excluded.credits, remaining = excluded.remaining, expires_at = excluded.expires_at, expired = excluded.expired",
        GrantColumnTypes);

    private static readonly TableWrite HoldsWrite = new("holds",
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, captured = excluded.captured, settled_at = excluded.settled_at",
        ("id", ColumnType.Text), ("organization_id", ColumnType.Text), ("credits", ColumnType.Integer), ("status", ColumnType.Text),
        ("expires_at", ColumnType.Integer), ("created_at", ColumnType.Integer), ("allocations", ColumnType.Text), ("assistant_id", ColumnType.Text),
        ("identifier", ColumnType.Text), ("captured", ColumnType.Integer), ("settled_at", ColumnType.Integer));

    private static readonly TableWrite ConsumptionsWrite = new("consumptions",
        "ON CONFLICT (id) DO UPDATE SET refunded = excluded.refunded",
        ("id", ColumnType.Text), ("organization_id", ColumnType.Text), ("credits", ColumnType.Integer), ("refunded", ColumnType.Integer),
        ("allocations", ColumnType.Text), ("period_start", ColumnType.Integer), ("assistant_id", ColumnType.Text), ("identifier", ColumnType.Text),
        ("metadata", ColumnType.Text), ("hold_id", ColumnType.Text), ("created_at", ColumnType.Integer));

    // Append-only: no conflict clause, so a repeated row is an error rather than a silent overwrite.
    private static readonly TableWrite EntriesWrite = new("ledger_entries", "",
        ("organization_id", ColumnType.Text), ("kind", ColumnType.Text), ("grant_id", ColumnType.Text), ("credits", ColumnType.Integer),
        ("reference_id", ColumnType.Text), ("created_at", ColumnType.Integer));

    // Rule 2: no conflict clause either; the primary key (organization_id, key) fails the batch on a duplicate.
    private static readonly TableWrite IdempotencyWrite = new("idempotency_keys", "",
        ("organization_id", ColumnType.Text), ("key", ColumnType.Text), ("fingerprint", ColumnType.Text), ("result", ColumnType.Text),
        ("created_at", ColumnType.Integer));

    private static readonly TableWrite AssistantsWrite = new("assistants", "",
        ("id", ColumnType.Text), ("organization_id", ColumnType.Text), ("name", ColumnType.Text), ("created_at", ColumnType.Integer));

    private static readonly TableWrite KeysWrite = new("api_keys", "",
        ("id", ColumnType.Text), ("organization_id", ColumnType.Text), ("name", ColumnType.Text), ("public_key", ColumnType.Text),
        ("secret_hash", ColumnType.Text), ("scopes", ColumnType.Integer), ("created_at", ColumnType.Integer));

    private static readonly TableWrite AuditWrite = new("audit_log", "",
        ("at", ColumnType.Integer), ("actor", ColumnType.Text), ("action", ColumnType.Text), ("organization_id", ColumnType.Text),
        ("status", ColumnType.Integer), ("request_id", ColumnType.Text));

    /// <summary>
    /// Every table write, numbered by its place here: a journal of batches (SqliteLedgerStore) names a table write
    /// by this number. Append only, so that journals written before stay readable.
    /// </summary>
    protected static readonly TableWrite[] TableWrites =
    [
        OrganizationsWrite, OrganizationsDeadlineWrite, GrantsExpiredWrite, GrantsSpentWrite, HoldsWrite, ConsumptionsWrite,
        EntriesWrite, IdempotencyWrite, AssistantsWrite, KeysWrite, AuditWrite, GrantsWholeWrite,
    ];

    /// <summary>The table write a journal's row is written with: its own, or its replacement (<see cref="GrantsExpiredWrite"/>).</summary>
    protected static TableWrite CurrentWrite(TableWrite journaled) => journaled == GrantsExpiredWrite ? GrantsWholeWrite : journaled;

    /// <summary>
    /// The upserts whose row is the whole current state of the row keyed by its first column, per table: the
    /// statement that updates every column a batch may change, and the one most batches use (or the same). Writing
    /// several batches at once, a store may write each such row once, its last state, with the broad statement if
    /// any batch used it; the broad statements come first, as in <see cref="RowsToWrite"/> (expired grants first).
    /// </summary>
    protected static readonly (TableWrite Broad, TableWrite Narrow)[] StateUpserts =
    [
        (OrganizationsDeadlineWrite, OrganizationsWrite), (GrantsWholeWrite, GrantsSpentWrite), (HoldsWrite, HoldsWrite),
        (ConsumptionsWrite, ConsumptionsWrite),
    ];

    /// <summary>The rows one batch inserts or updates, table by table, in the order they must be written.</summary>
    protected static List<(TableWrite Table, List<object?[]> Rows)> RowsToWrite(BatchChanges changes)
    {
        var tables = new List<(TableWrite, List<object?[]>)>(8);
        void Add<T>(TableWrite table, ICollection<T> items, Func<T, object?[]> row)
        {
            if (items.Count == 0) return;
            var rows = new List<object?[]>(items.Count);
            foreach (var item in items) rows.Add(row(item));
            tables.Add((table, rows));
        }
        // Each organization's deadline is computed once: it both chooses the statement and is written.
        var deadlineUnchanged = changes.Organizations.Values.Select(state => (State: state, Deadline: state.NextDeadline()))
            .ToLookup(pair => changes.DeadlinesAsLoaded.TryGetValue(pair.State.Id, out var loaded) && loaded == pair.Deadline);
        Add(OrganizationsWrite, deadlineUnchanged[true].ToList(), OrganizationRow);
        Add(OrganizationsDeadlineWrite, deadlineUnchanged[false].ToList(), OrganizationRow);
        // Expired grants first: a plan change expires the period's allowance and issues its replacement for the
        // same period start, which the unique index on live allowances refuses while the old one is still live.
        var rewritten = changes.Grants.Values.ToLookup(pair => pair.Grant.Expired || changes.GrantsResized.Contains(pair.Grant.Id));
        Add(GrantsWholeWrite, rewritten[true].ToList(), pair => GrantRow(pair.OrganizationId, pair.Grant));
        Add(GrantsSpentWrite, rewritten[false].ToList(), pair => GrantRow(pair.OrganizationId, pair.Grant));
        Add(HoldsWrite, changes.Holds.Values, HoldRowValues);
        Add(ConsumptionsWrite, changes.Consumptions.Values, ConsumptionRow);
        Add(EntriesWrite, changes.Entries, entry =>
            [entry.OrganizationId, Names.Of(entry.Kind), entry.GrantId, entry.Credits, entry.ReferenceId, Milliseconds(entry.CreatedAt)]);
        Add(IdempotencyWrite, changes.Idempotency.Values, record =>
            [record.OrganizationId, record.Key, record.Fingerprint, record.Result, Milliseconds(record.CreatedAt)]);
        Add(AssistantsWrite, changes.AssistantsAdded, pair =>
            [pair.Assistant.Id, pair.OrganizationId, pair.Assistant.Name, Milliseconds(pair.Assistant.CreatedAt)]);
        Add(KeysWrite, changes.KeysAdded, key =>
            [key.Id, key.OrganizationId, key.Name, key.PublicKey, key.SecretHash, (long)key.Scopes, Milliseconds(key.CreatedAt)]);
        Add(AuditWrite, changes.AuditEntries, entry =>
            [Milliseconds(entry.At), entry.Actor, entry.Action, entry.OrganizationId, (long)entry.Status, entry.RequestId]);
        return tables;
    }

    private static object?[] OrganizationRow((OrganizationState State, DateTimeOffset? Deadline) pair)
    {
        var (state, deadline) = pair;
        var subscription = state.Subscription;
        return
        [
            state.Id, state.Name, state.ExternalId, Names.Of(state.Status), Milliseconds(state.CreatedAt), subscription?.Plan,
            subscription?.CreditsPerPeriod, subscription is null ? null : Names.Of(subscription.Period), Milliseconds(subscription?.Anchor),
            subscription?.RolloverMax, Milliseconds(state.UsagePeriodStart), Milliseconds(subscription?.PeriodEnd), state.UsedInPeriod,
            Milliseconds(deadline),
        ];
    }

    private static object?[] GrantRow(string organizationId, GrantState grant) =>
    [
        grant.Id, organizationId, grant.Credits, grant.Remaining, Names.Of(grant.Source), (long)grant.Priority,
        Milliseconds(grant.EffectiveAt), Milliseconds(grant.ExpiresAt), Milliseconds(grant.CreatedAt), Milliseconds(grant.PeriodStart),
        grant.Expired ? 1L : 0L,
    ];

    private static object?[] HoldRowValues(HoldRow row) =>
    [
        row.Hold.Id, row.OrganizationId, row.Hold.Credits, Names.Of(row.Status), Milliseconds(row.Hold.ExpiresAt),
        Milliseconds(row.Hold.CreatedAt), JsonSerializer.Serialize(row.Hold.Allocations, LedgerJson.Default.AllocationArray),
        row.Hold.AssistantId, row.Hold.Identifier, row.Captured, Milliseconds(row.SettledAt),
    ];

    private static object?[] ConsumptionRow(ConsumptionRecord consumption) =>
    [
        consumption.Id, consumption.OrganizationId, consumption.Credits, consumption.Refunded,
        JsonSerializer.Serialize(consumption.Allocations, LedgerJson.Default.AllocationArray), Milliseconds(consumption.PeriodStart),
        consumption.AssistantId, consumption.Identifier,
        consumption.Metadata is null ? null : JsonSerializer.Serialize(consumption.Metadata, LedgerJson.Default.DictionaryStringString),
        consumption.HoldId, Milliseconds(consumption.CreatedAt),
    ];

    /// <summary>The changes that are updates of rows this batch did not load: removed assistants and revoked keys (both rare).</summary>
    protected static List<(string Sql, (string Name, object? Value)[] Parameters)> UpdatesToWrite(BatchChanges changes)
    {
        var updates = new List<(string, (string, object?)[])>(changes.AssistantsRemoved.Count + changes.KeysRevoked.Count);
        foreach (var (organizationId, assistantId, deletedAt) in changes.AssistantsRemoved)
        {
            updates.Add(("UPDATE assistants SET deleted_at = @deleted WHERE id = @id AND organization_id = @organization",
                [("@deleted", Milliseconds(deletedAt)), ("@id", assistantId), ("@organization", organizationId)]));
        }
        foreach (var (keyId, revokedAt) in changes.KeysRevoked)
        {
            updates.Add(("UPDATE api_keys SET revoked_at = @revoked WHERE id = @id AND revoked_at IS NULL",
                [("@revoked", Milliseconds(revokedAt)), ("@id", keyId)]));
        }
        return updates;
    }
}
