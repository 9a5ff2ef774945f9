using Npgsql;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Ledger.Stores.Postgres;

/// <summary>
/// Loads and lookups for many organizations at once: the base class's columns and row mappings, with
/// "= ANY(@ids)" instead of one statement per organization, sent as one NpgsqlBatch (one round trip).
/// Every statement still names the organizations it reads, so each stays within the rows of those
/// organizations (what a distribution by organization_id needs).
/// </summary>
public sealed partial class PostgresLedgerStore
{
    private enum LoadMode
    {
        /// <summary>Inside the batch's transaction: lock the organization rows first, in id order.</summary>
        LockForBatch,

        /// <summary>For a read: one REPEATABLE READ snapshot, opened and closed within the same round trip.</summary>
        Snapshot,
    }

    /// <summary>
    /// Loads the organizations in one round trip; with <paramref name="lookups"/>, the batch's lookups travel in the
    /// same round trip, after the locks (each statement of a READ COMMITTED transaction sees what committed before it).
    /// </summary>
    private async Task<Dictionary<string, OrganizationState>> LoadOrganizationsAsync(
        NpgsqlConnection connection, LoadMode mode, IReadOnlyList<string> organizationIds, CancellationToken cancellationToken,
        (BatchLookupRequest Request, BatchLookups Found)? lookups = null)
    {
        var organizations = new Dictionary<string, OrganizationState>(organizationIds.Count, StringComparer.Ordinal);
        var ids = organizationIds as string[] ?? [.. organizationIds];
        await using var batch = new NpgsqlBatch(connection);
        var readers = new List<Action<NpgsqlDataReader>>();
        if (mode == LoadMode.LockForBatch)
        {
            // READ COMMITTED suffices: each statement after the lock sees what the previous holder committed, and
            // nothing this batch reads can change before its commit, since every writer takes the same locks.
            batch.BatchCommands.Add(Statement("BEGIN ISOLATION LEVEL READ COMMITTED"));
            batch.BatchCommands.Add(Statement(TransactionSettingsSql));
            readers.Add(_ => { });
        }
        else
        {
            batch.BatchCommands.Add(Statement("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"));
        }
        if (ids.Length > 0)
        {
            // FOR UPDATE returns each row as last committed, after waiting for any node that holds it; ORDER BY
            // makes every node take the locks in the same order, so two batches can never wait on each other.
            var locking = mode == LoadMode.LockForBatch ? " FOR UPDATE" : "";
            batch.BatchCommands.Add(Statement($"SELECT {OrganizationColumns} FROM organizations WHERE id = ANY(@ids) ORDER BY id{locking}", ("@ids", ids)));
            readers.Add(reader =>
            {
                var state = ReadOrganization(reader);
                organizations[state.Id] = state;
            });
            batch.BatchCommands.Add(Statement(
                $"SELECT organization_id, {GrantColumns} FROM grants WHERE organization_id = ANY(@ids) AND expired = 0 ORDER BY organization_id, created_at, id",
                ("@ids", ids)));
            readers.Add(reader => organizations.GetValueOrDefault(reader.GetString(0))?.Grants.Add(ReadGrant(reader, 1)));
            batch.BatchCommands.Add(Statement(
                $"SELECT organization_id, {OpenHoldColumns} FROM holds WHERE organization_id = ANY(@ids) AND status = 'open'", ("@ids", ids)));
            readers.Add(reader =>
            {
                var hold = ReadHold(reader, 1);
                organizations.GetValueOrDefault(reader.GetString(0))?.OpenHolds.Add(hold.Id, hold);
            });
            // A batch's states are never kept, and only adding or removing an assistant decides on the assistants,
            // so other batches leave them out (they were a tenth of the database's time per consumption batch).
            if (mode == LoadMode.Snapshot || lookups?.Request.Assistants == true)
            {
                batch.BatchCommands.Add(Statement(
                    $"SELECT organization_id, {AssistantColumns} FROM assistants WHERE organization_id = ANY(@ids) AND deleted_at IS NULL ORDER BY organization_id, created_at, id",
                    ("@ids", ids)));
                readers.Add(reader => organizations.GetValueOrDefault(reader.GetString(0))?.Assistants.Add(ReadAssistant(reader, 1)));
            }
        }
        if (lookups is var (request, found)) AddLookups(batch, readers, request, found);
        if (mode == LoadMode.Snapshot) batch.BatchCommands.Add(Statement("COMMIT"));
        await ReadAllAsync(batch, readers, cancellationToken);
        return organizations;
    }

    /// <summary>Adds the statements that find the stored idempotency records, consumptions and holds a batch's commands name.</summary>
    private static void AddLookups(NpgsqlBatch batch, List<Action<NpgsqlDataReader>> readers, BatchLookupRequest request, BatchLookups lookups)
    {
        if (request.IdempotencyKeys.Count > 0)
        {
            // A join on the (organization, key) pairs, so the primary key (organization_id, key) is probed once per pair.
            batch.BatchCommands.Add(Statement(
                $"""
                SELECT organization_id, key, {IdempotencyColumns} FROM idempotency_keys
                JOIN unnest(@organizations, @keys) AS wanted (organization_id, key) USING (organization_id, key)
                """,
                ("@organizations", request.IdempotencyKeys.Select(pair => pair.OrganizationId).ToArray()),
                ("@keys", request.IdempotencyKeys.Select(pair => pair.Key).ToArray())));
            readers.Add(reader =>
            {
                var record = ReadIdempotency(reader, 2, reader.GetString(0), reader.GetString(1));
                lookups.Idempotency[(record.OrganizationId, record.Key)] = record;
            });
        }
        AddByIdLookup(batch, readers, "consumptions", ConsumptionColumns, request.Consumptions,
            reader => ReadConsumption(reader, 1, reader.GetString(0)), consumption => (consumption.OrganizationId, consumption.Id),
            consumption => lookups.Consumptions[consumption.Id] = consumption);
        AddByIdLookup(batch, readers, "holds", HoldRowColumns, request.Holds,
            reader => ReadHoldRow(reader, 1, reader.GetString(0)), hold => (hold.OrganizationId, hold.Hold.Id),
            hold => lookups.Holds[hold.Hold.Id] = hold);
    }

    /// <summary>
    /// Rows found by id within the organizations named with them: one statement over both arrays, whose matches
    /// are then kept only for the (organization, id) pairs asked for, so no row reaches another organization's command.
    /// </summary>
    private static void AddByIdLookup<T>(NpgsqlBatch batch, List<Action<NpgsqlDataReader>> readers, string table, string columns,
        IReadOnlyList<(string OrganizationId, string Id)> wanted, Func<NpgsqlDataReader, T> read, Func<T, (string, string)> keyOf, Action<T> found)
    {
        if (wanted.Count == 0) return;
        var pairs = wanted.ToHashSet();
        batch.BatchCommands.Add(Statement(
            $"SELECT organization_id, {columns} FROM {table} WHERE id = ANY(@ids) AND organization_id = ANY(@organizations)",
            ("@ids", wanted.Select(pair => pair.Id).ToArray()),
            ("@organizations", wanted.Select(pair => pair.OrganizationId).Distinct().ToArray())));
        readers.Add(reader =>
        {
            var row = read(reader);
            if (pairs.Contains(keyOf(row))) found(row);
        });
    }

    /// <summary>Runs the batch and hands each result set, in order, to its reader; statements without rows (BEGIN, COMMIT) have none.</summary>
    private static async Task ReadAllAsync(NpgsqlBatch batch, List<Action<NpgsqlDataReader>> readers, CancellationToken cancellationToken)
    {
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        for (var index = 0; index < readers.Count; index++)
        {
            if (index > 0 && !await reader.NextResultAsync(cancellationToken))
            {
                throw new InvalidOperationException($"PostgreSQL returned {index} result sets where {readers.Count} were expected.");
            }
            while (await reader.ReadAsync(cancellationToken)) readers[index](reader);
        }
        while (await reader.NextResultAsync(cancellationToken)) { }
    }
}
