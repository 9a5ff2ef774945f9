using System.Data.Common;
using System.Globalization;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Ledger.Stores;

public abstract partial class RelationalStore
{
    /// <summary>Runs a query on a read connection and maps each row.</summary>
    protected Task<List<T>> QueryAsync<T>(string sql, Func<DbDataReader, T> map, CancellationToken cancellationToken, params (string, object?)[] parameters) =>
        OnReadConnectionAsync(async connection =>
        {
            var rows = new List<T>();
            await ReadRowsAsync(connection, null, sql, reader => rows.Add(map(reader)), cancellationToken, parameters);
            return rows;
        }, cancellationToken);

    /// <summary>
    /// Runs <paramref name="read"/> on a read connection of its own. A store may run it a second time on a new
    /// connection when the first had died unused (PostgresLedgerStore), so it must write nothing that a second run
    /// would write twice.
    /// </summary>
    protected virtual async Task<T> OnReadConnectionAsync<T>(Func<DbConnection, Task<T>> read, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadConnectionAsync(cancellationToken);
        return await read(connection);
    }

    private const string KeyColumns = "id, organization_id, name, public_key, secret_hash, scopes, created_at, revoked_at";

    private static ApiKeyRecord ReadKey(DbDataReader reader) => new(
        reader.GetString(0), reader.GetString(1), NullableString(reader, 2), reader.GetString(3), reader.GetString(4),
        (KeyScopes)Long(reader, 5), Time(Long(reader, 6)), Time(NullableLong(reader, 7)));

    public async Task<ApiKeyRecord?> FindKeyBySecretHashAsync(string secretHash, CancellationToken cancellationToken) =>
        (await QueryAsync($"SELECT {KeyColumns} FROM api_keys WHERE secret_hash = @hash", ReadKey, cancellationToken, ("@hash", secretHash)))
        .SingleOrDefault();

    public async Task<ApiKeyRecord?> FindKeyAsync(string organizationId, string keyId, CancellationToken cancellationToken) =>
        (await QueryAsync($"SELECT {KeyColumns} FROM api_keys WHERE id = @id AND organization_id = @organization", ReadKey, cancellationToken,
            ("@id", keyId), ("@organization", organizationId))).SingleOrDefault();

    public async Task<IReadOnlyList<ApiKeyRecord>> ListKeysAsync(string organizationId, CancellationToken cancellationToken) =>
        await QueryAsync($"SELECT {KeyColumns} FROM api_keys WHERE organization_id = @organization ORDER BY created_at, id", ReadKey,
            cancellationToken, ("@organization", organizationId));

    public async Task<Page<OrganizationState>> ListOrganizationsAsync(string? cursor, int limit, string? query, CancellationToken cancellationToken)
    {
        var sql = "SELECT id FROM organizations WHERE status <> 'deleted'";
        var parameters = new List<(string, object?)> { ("@limit", (long)limit + 1) };
        if (cursor is not null)
        {
            sql += " AND id > @cursor";
            parameters.Add(("@cursor", cursor));
        }
        if (!string.IsNullOrEmpty(query))
        {
            // The term is found anywhere in the name, its % and _ as themselves (escaped, not wildcards). Case is
            // ignored for letters that the database's LOWER folds (SQLite's folds ASCII only, PostgreSQL's every
            // letter), and the term as typed matches too, so a name with other letters is found as it is written.
            sql += @" AND (LOWER(name) LIKE @lowered ESCAPE '\' OR name LIKE @typed ESCAPE '\' OR external_id = @exact OR id = @exact)";
            parameters.Add(("@lowered", "%" + EscapeLike(query.ToLowerInvariant()) + "%"));
            parameters.Add(("@typed", "%" + EscapeLike(query) + "%"));
            parameters.Add(("@exact", query));
        }
        sql += " ORDER BY id LIMIT @limit";
        var ids = await QueryAsync(sql, reader => reader.GetString(0), cancellationToken, [.. parameters]);
        var states = new List<OrganizationState>(Math.Min(ids.Count, limit));
        foreach (var id in ids.Take(limit))
        {
            if (await ReadOrganizationAsync(id, cancellationToken) is { } state) states.Add(state);
        }
        return new Page<OrganizationState>(states, ids.Count > limit ? ids[limit - 1] : null);
    }

    /// <summary>A LIKE pattern that matches <paramref name="text"/> literally, with \ as the escape character.</summary>
    private static string EscapeLike(string text) => text.Replace(@"\", @"\\").Replace("%", @"\%").Replace("_", @"\_");

    public async Task<Page<LedgerEntryView>> ListEntriesAsync(string organizationId, string? cursor, int limit, CancellationToken cancellationToken)
    {
        var sql = "SELECT id, kind, grant_id, credits, reference_id, created_at FROM ledger_entries WHERE organization_id = @organization";
        var parameters = new List<(string, object?)> { ("@organization", organizationId), ("@limit", (long)limit + 1) };
        if (cursor is not null)
        {
            sql += " AND id < @cursor";
            parameters.Add(("@cursor", long.Parse(cursor, CultureInfo.InvariantCulture)));
        }
        sql += " ORDER BY id DESC LIMIT @limit";
        var entries = await QueryAsync(sql, reader => new LedgerEntryView(Long(reader, 0), reader.GetString(1), NullableString(reader, 2),
            Long(reader, 3), NullableString(reader, 4), Time(Long(reader, 5))), cancellationToken, [.. parameters]);
        var next = entries.Count > limit ? entries[limit - 1].Id.ToString(CultureInfo.InvariantCulture) : null;
        return new Page<LedgerEntryView>(entries.Take(limit).ToList(), next);
    }

    /// <summary>Days are grouped as whole UTC days since the epoch, which both dialects compute the same way.</summary>
    public async Task<IReadOnlyList<UsageBucket>> UsageAsync(string organizationId, DateTimeOffset from, DateTimeOffset to, bool byAssistant, CancellationToken cancellationToken)
    {
        var key = byAssistant ? "COALESCE(assistant_id, '')" : "(created_at / 86400000)";
        var rows = await QueryAsync(
            $"""
            SELECT {key} AS bucket, SUM(credits), SUM(refunded), COUNT(*) FROM consumptions
            WHERE organization_id = @organization AND created_at >= @from AND created_at < @to
            GROUP BY {key} ORDER BY bucket
            """,
            reader => new UsageBucket(
                byAssistant ? reader.GetString(0) : Time(Long(reader, 0) * 86_400_000).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                Long(reader, 1), Long(reader, 2), Long(reader, 3)),
            cancellationToken, ("@organization", organizationId), ("@from", Milliseconds(from)), ("@to", Milliseconds(to)));
        return rows;
    }

    public async Task<IReadOnlyList<string>> FindOrganizationsDueAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken) =>
        await QueryAsync("SELECT id FROM organizations WHERE next_deadline <= @now ORDER BY next_deadline LIMIT @limit",
            reader => reader.GetString(0), cancellationToken, ("@now", Milliseconds(now)), ("@limit", (long)Math.Min(limit, DueOrganizationsPageMax)));

    public async Task<string?> GetSettingAsync(string name, CancellationToken cancellationToken) =>
        (await QueryAsync("SELECT value FROM settings WHERE name = @name", reader => reader.GetString(0), cancellationToken, ("@name", name)))
        .SingleOrDefault();

    public async Task<string> SetSettingOnceAsync(string name, string value, CancellationToken cancellationToken)
    {
        // DO NOTHING on a conflict: run twice, the insert stores the value once.
        await OnReadConnectionAsync(async connection =>
        {
            await ExecuteAsync(connection, null, "INSERT INTO settings (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING",
                cancellationToken, ("@name", name), ("@value", value));
            return true;
        }, cancellationToken);
        return await GetSettingAsync(name, cancellationToken) ?? throw new InvalidOperationException($"Setting {name} was not stored.");
    }

    /// <summary>
    /// Rule 10: recomputes every grant's remaining from the ledger entries, and checks the invariants that
    /// a wrong ledger would break (bounds, refunds, usage in the period).
    /// </summary>
    public virtual async Task<VerifyReport> VerifyAsync(CancellationToken cancellationToken)
    {
        var differences = new List<string>();
        long differencesFound = 0;
        void Add(IEnumerable<string> found)
        {
            foreach (var difference in found)
            {
                differencesFound++;
                if (differences.Count < DifferencesListedMax) differences.Add(difference);
            }
        }
        Add(await QueryAsync(
            """
            SELECT g.id, g.organization_id, g.remaining, COALESCE(e.total, 0) FROM grants g
            LEFT JOIN (SELECT grant_id, SUM(credits) AS total FROM ledger_entries WHERE grant_id IS NOT NULL GROUP BY grant_id) e
                ON e.grant_id = g.id
            WHERE g.remaining <> COALESCE(e.total, 0)
            """,
            reader => $"grant {reader.GetString(0)} of {reader.GetString(1)}: remaining {Long(reader, 2)}, ledger says {Long(reader, 3)}",
            cancellationToken));
        Add(await QueryAsync(
            "SELECT DISTINCT e.grant_id FROM ledger_entries e WHERE e.grant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = e.grant_id)",
            reader => $"ledger entries name grant {reader.GetString(0)}, which does not exist", cancellationToken));
        Add(await QueryAsync(
            """
            SELECT o.id, o.used_in_period, COALESCE(SUM(c.credits - c.refunded), 0) FROM organizations o
            LEFT JOIN consumptions c ON c.organization_id = o.id AND c.period_start = o.period_start
            WHERE o.period_start IS NOT NULL GROUP BY o.id, o.used_in_period
            HAVING o.used_in_period <> COALESCE(SUM(c.credits - c.refunded), 0)
            """,
            reader => $"organization {reader.GetString(0)}: used {Long(reader, 1)}, consumptions say {Long(reader, 2)}", cancellationToken));
        Add(await QueryAsync(
            """
            SELECT h.id, h.credits, COALESCE(-SUM(e.credits), 0) FROM holds h
            JOIN ledger_entries e ON e.reference_id = h.id AND e.kind = 'hold' AND e.organization_id = h.organization_id
            GROUP BY h.id, h.credits HAVING h.credits <> COALESCE(-SUM(e.credits), 0)
            """,
            reader => $"hold {reader.GetString(0)}: {Long(reader, 1)} credits, ledger reserved {Long(reader, 2)}", cancellationToken));
        var counts = await QueryAsync(
            "SELECT (SELECT COUNT(*) FROM organizations), (SELECT COUNT(*) FROM grants), (SELECT COUNT(*) FROM ledger_entries)",
            reader => (Long(reader, 0), Long(reader, 1), Long(reader, 2)), cancellationToken);
        Add(await VerifyMemoryAsync(cancellationToken));
        var (organizations, grants, entries) = counts[0];
        return new VerifyReport(differencesFound == 0, organizations, grants, entries, differencesFound, differences);
    }

    /// <summary>A store that serves state from memory checks it against the database here.</summary>
    protected virtual Task<IReadOnlyList<string>> VerifyMemoryAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<string>>([]);
}
