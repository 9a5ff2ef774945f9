using System.Diagnostics;
using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;

namespace Tally.Seeding;

/// <summary>
/// Fills an empty SQLite store with many organizations and ledger entries for the scale benchmark (T6),
/// far faster than the API: one transaction, reused statements, no sync until the end. Each organization
/// gets a key, a yearly subscription with a large allowance, and (entries - 1) one-credit consumptions,
/// written exactly as the engine writes them, so `tally verify` stays clean. It refuses a folder that holds
/// organizations already, and holds the folder against any server until it ends.
/// </summary>
public static class Seeder
{
    /// <summary>Rows written between progress lines.</summary>
    private const int ProgressEveryOrganizations = 50_000;

    public static async Task<int> SeedAsync(string dataDirectory, int organizations, int entriesPerOrganization, string keysFile, int keysToWrite)
    {
        var stopwatch = Stopwatch.StartNew();
        // Opening the store creates the tables, and writes any journaled batch into them, so the journal is empty.
        await using (var store = new SqliteLedgerStore(dataDirectory))
        {
            await store.InitializeAsync(CancellationToken.None);
        }
        // Held until the seed ends: the tables are written without a journal, which a server on this folder would
        // share with no warning.
        using var folder = SqliteLedgerStore.TakeFolder(dataDirectory);
        var builder = new SqliteConnectionStringBuilder { DataSource = Path.Combine(dataDirectory, SqliteLedgerStore.FileName), Pooling = false };
        await using var connection = new SqliteConnection(builder.ToString());
        await connection.OpenAsync();
        if (HoldsOrganizations(connection))
        {
            // A crash while loading without a journal would damage the ledger already there.
            Console.Error.WriteLine($"{dataDirectory} already holds organizations; tally seed fills an empty data folder only.");
            return ExitCodes.Failure;
        }
        // A bulk load into an empty store needs no journal: if it fails, delete the folder and seed again.
        Execute(connection, null, "PRAGMA journal_mode=OFF");
        Execute(connection, null, "PRAGMA synchronous=OFF");
        await using var transaction = connection.BeginTransaction();
        var statements = new Statements(connection, transaction);
        var now = LedgerEngine.WholeMilliseconds(DateTimeOffset.UtcNow);
        var periodStart = now.ToUnixTimeMilliseconds();
        var periodEnd = now.AddYears(1).ToUnixTimeMilliseconds();
        const long allowance = 1_000_000_000_000;
        var consumptions = Math.Max(0, entriesPerOrganization - 1);
        await using var keys = new StreamWriter(keysFile);
        for (var index = 0; index < organizations; index++)
        {
            var organizationId = "org-" + Guid.CreateVersion7(now);
            var grantId = Guid.CreateVersion7(now).ToString();
            statements.Organization.Run(organizationId, $"seed-{index}", now.ToUnixTimeMilliseconds(), periodStart, periodEnd, consumptions);
            statements.Grant.Run(grantId, organizationId, allowance, allowance - consumptions, periodStart, periodEnd);
            statements.Entry.Run(organizationId, Names.Of(EntryKind.Grant), grantId, allowance, null, periodStart);
            for (var consumption = 0; consumption < consumptions; consumption++)
            {
                var consumptionId = Guid.CreateVersion7(now).ToString();
                statements.Consumption.Run(consumptionId, organizationId, $"[{{\"grantId\":\"{grantId}\",\"credits\":1}}]", periodStart);
                statements.Entry.Run(organizationId, Names.Of(EntryKind.Consume), grantId, -1L, consumptionId, periodStart);
                statements.Idempotency.Run(organizationId, $"seed-{consumption}", "seeded", $"{{\"id\":\"{consumptionId}\"}}", periodStart);
            }
            var secret = KeyMaterial.NewSecretKey();
            var publicKey = KeyMaterial.NewPublicKey();
            statements.Key.Run(Guid.CreateVersion7(now).ToString(), organizationId, publicKey, KeyMaterial.Sha256Hex(secret), (long)KeyScopes.All, periodStart);
            if (index < keysToWrite) await keys.WriteLineAsync(publicKey + ":" + secret);
            if ((index + 1) % ProgressEveryOrganizations == 0)
            {
                Console.WriteLine($"{index + 1} organizations, {(long)(index + 1) * entriesPerOrganization} entries, {stopwatch.Elapsed.TotalSeconds:F0} s");
            }
        }
        await transaction.CommitAsync();
        Execute(connection, null, "PRAGMA journal_mode=WAL");
        Console.WriteLine($"Seeded {organizations} organizations and {(long)organizations * entriesPerOrganization} ledger entries in {stopwatch.Elapsed.TotalSeconds:F0} s.");
        return ExitCodes.Success;
    }

    private static bool HoldsOrganizations(SqliteConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT EXISTS (SELECT 1 FROM organizations)";
        return Convert.ToInt64(command.ExecuteScalar()) != 0;
    }

    private static void Execute(SqliteConnection connection, SqliteTransaction? transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>One prepared INSERT, run with positional values.</summary>
    private sealed class Insert
    {
        private readonly SqliteCommand command;

        public Insert(SqliteConnection connection, SqliteTransaction transaction, string sql, int parameters)
        {
            command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = sql;
            for (var index = 1; index <= parameters; index++) command.Parameters.Add(new SqliteParameter("@p" + index, null));
            command.Prepare();
        }

        public void Run(params object?[] values)
        {
            for (var index = 0; index < values.Length; index++) command.Parameters[index].Value = values[index] ?? DBNull.Value;
            command.ExecuteNonQuery();
        }
    }

    private sealed class Statements(SqliteConnection connection, SqliteTransaction transaction)
    {
        public Insert Organization { get; } = new(connection, transaction, """
            INSERT INTO organizations (id, name, status, created_at, plan, credits_per_period, period, anchor, rollover_max,
                period_start, period_end, used_in_period, next_deadline)
            VALUES (@p1, @p2, 'active', @p3, 'seed', 1000000000000, 'year', @p4, 0, @p4, @p5, @p6, @p5)
            """, 6);
        public Insert Grant { get; } = new(connection, transaction, """
            INSERT INTO grants (id, organization_id, credits, remaining, source, priority, effective_at, expires_at, created_at, period_start, expired)
            VALUES (@p1, @p2, @p3, @p4, 'allowance', 0, @p5, @p6, @p5, @p5, 0)
            """, 6);
        public Insert Entry { get; } = new(connection, transaction, """
            INSERT INTO ledger_entries (organization_id, kind, grant_id, credits, reference_id, created_at) VALUES (@p1, @p2, @p3, @p4, @p5, @p6)
            """, 6);
        public Insert Consumption { get; } = new(connection, transaction, """
            INSERT INTO consumptions (id, organization_id, credits, refunded, allocations, period_start, created_at)
            VALUES (@p1, @p2, 1, 0, @p3, @p4, @p4)
            """, 4);
        public Insert Idempotency { get; } = new(connection, transaction, """
            INSERT INTO idempotency_keys (organization_id, key, fingerprint, result, created_at) VALUES (@p1, @p2, @p3, @p4, @p5)
            """, 5);
        public Insert Key { get; } = new(connection, transaction, """
            INSERT INTO api_keys (id, organization_id, name, public_key, secret_hash, scopes, created_at) VALUES (@p1, @p2, NULL, @p3, @p4, @p5, @p6)
            """, 6);
    }
}
