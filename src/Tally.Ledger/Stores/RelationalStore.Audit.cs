using System.Globalization;
using Tally.Ledger.Engine;

namespace Tally.Ledger.Stores;

public abstract partial class RelationalStore
{
    public async Task<Page<AuditEntryView>> ListAuditAsync(string? cursor, int limit, CancellationToken cancellationToken)
    {
        var sql = "SELECT id, at, actor, action, organization_id, status, request_id FROM audit_log";
        var parameters = new List<(string, object?)> { ("@limit", (long)limit + 1) };
        if (cursor is not null)
        {
            sql += " WHERE id < @cursor";
            parameters.Add(("@cursor", long.Parse(cursor, CultureInfo.InvariantCulture)));
        }
        sql += " ORDER BY id DESC LIMIT @limit";
        var entries = await QueryAsync(sql, reader => new AuditEntryView(Long(reader, 0), Time(Long(reader, 1)), reader.GetString(2),
            reader.GetString(3), NullableString(reader, 4), (int)Long(reader, 5), NullableString(reader, 6)), cancellationToken, [.. parameters]);
        var next = entries.Count > limit ? entries[limit - 1].Id.ToString(CultureInfo.InvariantCulture) : null;
        return new Page<AuditEntryView>(entries.Take(limit).ToList(), next);
    }
}
