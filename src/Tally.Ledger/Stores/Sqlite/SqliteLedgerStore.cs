using System.Collections.Concurrent;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Ledger.Stores.Sqlite;

/// <summary>
/// The embedded store: one SQLite file in WAL mode with synchronous=FULL, one long-lived write connection
/// used only by the engine's writer (so its prepared statements are reused), and pooled read connections.
/// Because this process is the only writer, committed organization state is served from memory.
/// </summary>
public sealed class SqliteLedgerStore : RelationalStore
{
    public const string FileName = "tally.db";

    private readonly string connectionString;
    private readonly ConcurrentDictionary<string, OrganizationState> committed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SqliteCommand> prepared = new(StringComparer.Ordinal);
    private readonly int logPagesMax;
    private SqliteConnection? writeConnection;
    private WalCheckpointer? checkpointer;

    public SqliteLedgerStore(string dataDirectory) : this(dataDirectory, WalCheckpointer.LogPagesMax)
    {
    }

    /// <summary>A store whose write-ahead log starts over at <paramref name="logPagesMax"/> pages (tests use a small one).</summary>
    internal SqliteLedgerStore(string dataDirectory, int logPagesMax)
    {
        this.logPagesMax = logPagesMax;
        Directory.CreateDirectory(dataDirectory);
        DatabasePath = Path.GetFullPath(Path.Combine(dataDirectory, FileName));
        connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = DatabasePath,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
    }

    public string DatabasePath { get; }

    /// <summary>The log's checkpointer, for tests; null before the store is initialized.</summary>
    internal WalCheckpointer? Checkpointer => checkpointer;
    public override bool IsSoleWriter => true;
    protected override string IdentityColumn => "INTEGER PRIMARY KEY AUTOINCREMENT";
    protected override string WithoutRowIdClause => "WITHOUT ROWID";

    /// <summary>Pages kept in memory by the write connection: 64 MiB keeps the hot indexes cached.</summary>
    private const int WriteCacheKibibytes = 65_536;

    public override async Task InitializeAsync(CancellationToken cancellationToken)
    {
        writeConnection = new SqliteConnection(connectionString);
        await writeConnection.OpenAsync(cancellationToken);
        // WAL lets readers run beside the writer; FULL syncs the WAL at every commit (SPEC rule 3).
        await ExecuteAsync(writeConnection, null, "PRAGMA journal_mode=WAL", cancellationToken);
        await ExecuteAsync(writeConnection, null, "PRAGMA synchronous=FULL", cancellationToken);
        await ExecuteAsync(writeConnection, null, $"PRAGMA cache_size=-{WriteCacheKibibytes}", cancellationToken);
        // The log is checkpointed by WalCheckpointer on its own connection, not by the committing writer.
        await ExecuteAsync(writeConnection, null, "PRAGMA wal_autocheckpoint=0", cancellationToken);
        await using var transaction = (SqliteTransaction)await writeConnection.BeginTransactionAsync(cancellationToken);
        await ExecuteAsync(writeConnection, transaction,
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)", cancellationToken);
        foreach (var (version, _) in Schema.Migrations)
        {
            await using var check = Command(writeConnection, transaction, "SELECT COUNT(*) FROM schema_migrations WHERE version = @version", ("@version", (long)version));
            if (Convert.ToInt64(await check.ExecuteScalarAsync(cancellationToken)) > 0) continue;
            foreach (var statement in MigrationStatements(version)) await ExecuteAsync(writeConnection, transaction, statement, cancellationToken);
            await ExecuteAsync(writeConnection, transaction, "INSERT INTO schema_migrations (version, applied_at) VALUES (@version, @now)",
                cancellationToken, ("@version", (long)version), ("@now", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
        }
        await transaction.CommitAsync(cancellationToken);
        checkpointer = new WalCheckpointer(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString(), logPagesMax);
    }

    /// <summary>
    /// An online, consistent copy of the database: `VACUUM INTO` reads one snapshot of the WAL database while
    /// the server keeps writing, and writes a compact file that is itself a complete store (restore = copy it
    /// to `tally.db` in an empty data folder).
    /// </summary>
    public static async Task BackupAsync(string dataDirectory, string targetFile, CancellationToken cancellationToken)
    {
        var source = Path.Combine(dataDirectory, FileName);
        if (!File.Exists(source)) throw new FileNotFoundException($"No Tally store at {source}.");
        var target = Path.GetFullPath(targetFile);
        if (File.Exists(target)) throw new IOException($"{target} exists already; choose a new file.");
        var builder = new SqliteConnectionStringBuilder { DataSource = source, Mode = SqliteOpenMode.ReadOnly, Pooling = false };
        await using var connection = new SqliteConnection(builder.ToString());
        await connection.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "VACUUM INTO @target";
        command.Parameters.AddWithValue("@target", target);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Reads the synchronous setting back, so tests can show durability is on.</summary>
    public async Task<long> SynchronousModeAsync()
    {
        await using var command = Command(WriteConnection, null, "PRAGMA synchronous");
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }

    public override async Task<IBatchTransaction> BeginBatchAsync(IReadOnlyList<string> sortedOrganizationIds, BatchLookupRequest lookups, CancellationToken cancellationToken)
    {
        var connection = WriteConnection;
        var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(System.Data.IsolationLevel.Serializable, cancellationToken);
        var organizations = new Dictionary<string, OrganizationState>(sortedOrganizationIds.Count, StringComparer.Ordinal);
        try
        {
            foreach (var id in sortedOrganizationIds)
            {
                var state = committed.GetValueOrDefault(id) ?? await LoadOrganizationAsync(connection, transaction, id, cancellationToken);
                if (state is not null) organizations[id] = state;
            }
            return new Batch(this, transaction, organizations, await LookupAsync(connection, transaction, lookups, cancellationToken));
        }
        catch
        {
            await transaction.DisposeAsync();
            throw;
        }
    }

    public override async ValueTask<OrganizationState?> ReadOrganizationAsync(string organizationId, CancellationToken cancellationToken)
    {
        if (committed.TryGetValue(organizationId, out var state)) return state;
        await using var connection = (SqliteConnection)await OpenReadConnectionAsync(cancellationToken);
        var loaded = await LoadOrganizationAsync(connection, null, organizationId, cancellationToken);
        if (loaded is null) return null;
        // TryAdd, never overwrite: if the writer published a newer state meanwhile, that one must win.
        return committed.GetOrAdd(organizationId, loaded);
    }

    protected override async Task<DbConnection> OpenReadConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>The writer's statements are prepared once and reused for every batch.</summary>
    protected override DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        if (!ReferenceEquals(connection, writeConnection)) return base.Command(connection, transaction, sql, parameters);
        if (!prepared.TryGetValue(sql, out var command))
        {
            command = writeConnection.CreateCommand();
            command.CommandText = sql;
            foreach (var (name, _) in parameters) command.Parameters.Add(new SqliteParameter(name, null));
            prepared[sql] = command;
        }
        command.Transaction = (SqliteTransaction?)transaction;
        // The same SQL always comes with the same parameters in the same order, so values are set in place.
        for (var index = 0; index < parameters.Length; index++) command.Parameters[index].Value = parameters[index].Value ?? DBNull.Value;
        return command;
    }

    /// <summary>
    /// Rows per INSERT statement. SQLite runs a multi-row VALUES list as one program, so a longer statement
    /// saves a step and a reset per row; values are bound by position (see <see cref="RowStatement"/>), so a
    /// statement's size no longer costs binding time, and 16 keeps the statements few and small.
    /// </summary>
    private const int RowsPerStatementMax = 16;

    private readonly Dictionary<(TableWrite Table, int Rows), RowStatement> rowStatements = [];

    /// <summary>
    /// Writes a table's rows in statements of 16, 8, … 1 rows (powers of two, so that a handful of prepared
    /// statements per table serve every batch size).
    /// </summary>
    protected override Task WriteRowsAsync(DbConnection connection, DbTransaction? transaction, TableWrite table, List<object?[]> rows, CancellationToken cancellationToken)
    {
        var written = 0;
        while (written < rows.Count)
        {
            var chunk = StatementSize(rows.Count - written, RowsPerStatementMax);
            if (!rowStatements.TryGetValue((table, chunk), out var statement))
            {
                statement = new RowStatement(WriteConnection, MultiRowSql(table, chunk));
                rowStatements[(table, chunk)] = statement;
            }
            statement.Run(rows, written, chunk);
            written += chunk;
        }
        return Task.CompletedTask;
    }

    private static string MultiRowSql(TableWrite table, int rows)
    {
        var columns = table.Columns.Length;
        var values = Enumerable.Range(0, rows).Select(row =>
            "(" + string.Join(", ", Enumerable.Range(1, columns).Select(column => "?" + (row * columns + column))) + ")");
        return $"INSERT INTO {table.Table} ({table.ColumnList}) VALUES {string.Join(", ", values)} {table.Conflict}";
    }

    /// <summary>
    /// One of the writer's INSERT statements, prepared once on the write connection and bound by position
    /// through SQLite's own API. Microsoft.Data.Sqlite binds every parameter by name, and SQLite finds a name by
    /// a linear search of the statement's parameters, so binding a 16-row statement cost more than the inserts
    /// themselves (bench/RESULTS.md). It runs inside the transaction the connection has open.
    /// </summary>
    private sealed class RowStatement(SqliteConnection connection, string sql) : IDisposable
    {
        private readonly SQLitePCL.sqlite3_stmt statement = Prepare(connection, sql);

        private static SQLitePCL.sqlite3_stmt Prepare(SqliteConnection connection, string sql)
        {
            var result = SQLitePCL.raw.sqlite3_prepare_v2(connection.Handle, sql, out var statement);
            SqliteException.ThrowExceptionForRC(result, connection.Handle);
            return statement;
        }

        public void Run(List<object?[]> rows, int first, int count)
        {
            try
            {
                var index = 1;
                for (var row = first; row < first + count; row++)
                {
                    foreach (var value in rows[row]) Bind(index++, value);
                }
                var result = SQLitePCL.raw.sqlite3_step(statement);
                if (result != SQLitePCL.raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(result, connection.Handle);
            }
            finally
            {
                SQLitePCL.raw.sqlite3_reset(statement);
            }
        }

        private void Bind(int index, object? value)
        {
            var result = value switch
            {
                null => SQLitePCL.raw.sqlite3_bind_null(statement, index),
                long number => SQLitePCL.raw.sqlite3_bind_int64(statement, index, number),
                string text => SQLitePCL.raw.sqlite3_bind_text16(statement, index, text),
                _ => throw new InvalidOperationException($"A row value of type {value.GetType().Name} has no column type."),
            };
            if (result != SQLitePCL.raw.SQLITE_OK) SqliteException.ThrowExceptionForRC(result, connection.Handle);
        }

        public void Dispose() => statement.Dispose();
    }

    protected override ValueTask ReturnAsync(DbCommand command) =>
        ReferenceEquals(command.Connection, writeConnection) ? ValueTask.CompletedTask : command.DisposeAsync();

    protected override async Task<IReadOnlyList<string>> VerifyMemoryAsync(CancellationToken cancellationToken)
    {
        var differences = new List<string>();
        await using var connection = await OpenReadConnectionAsync(cancellationToken);
        foreach (var (id, inMemory) in committed)
        {
            var onDisk = await LoadOrganizationAsync(connection, null, id, cancellationToken);
            if (onDisk is null) { differences.Add($"organization {id} is in memory but not on disk"); continue; }
            // Grants are compared by id: memory keeps creation order, the disk orders by (created_at, id), and two
            // grants made in the same millisecond (an allowance and its rollover) have random-ordered v7 ids.
            var grantsOnDisk = onDisk.Grants.Select(grant => (grant.Id, grant.Remaining)).Order();
            var grantsInMemory = inMemory.Grants.Select(grant => (grant.Id, grant.Remaining)).Order();
            if (onDisk.UsedInPeriod != inMemory.UsedInPeriod || onDisk.OpenHolds.Count != inMemory.OpenHolds.Count
                || !grantsOnDisk.SequenceEqual(grantsInMemory))
            {
                differences.Add($"organization {id}: memory and disk disagree");
            }
        }
        return differences;
    }

    public override async ValueTask DisposeAsync()
    {
        foreach (var command in prepared.Values) await command.DisposeAsync();
        prepared.Clear();
        foreach (var statement in rowStatements.Values) statement.Dispose();
        rowStatements.Clear();
        checkpointer?.Dispose();
        checkpointer = null;
        if (writeConnection is not null) await writeConnection.DisposeAsync();
        writeConnection = null;
        SqliteConnection.ClearAllPools();
    }

    private SqliteConnection WriteConnection => writeConnection ?? throw new InvalidOperationException("The store is not initialized.");

    private sealed class Batch(SqliteLedgerStore store, SqliteTransaction transaction, Dictionary<string, OrganizationState> organizations, BatchLookups lookups)
        : IBatchTransaction
    {
        private bool finished;

        public IReadOnlyDictionary<string, OrganizationState> Organizations => organizations;

        public BatchLookups Lookups => lookups;

        public async Task CommitAsync(BatchChanges changes, CancellationToken cancellationToken)
        {
            await store.WriteChangesAsync(store.WriteConnection, transaction, changes, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            finished = true;
            // Published only now that the commit is durable: readers never see uncommitted state.
            foreach (var (id, state) in changes.Organizations) store.committed[id] = state;
            // After publishing, so that readers need not wait for the checkpoint the writer may run here.
            store.checkpointer?.Committed(store.WriteConnection);
        }

        public async ValueTask DisposeAsync()
        {
            if (!finished)
            {
                try { await transaction.RollbackAsync(); } catch (SqliteException) { /* the connection already rolled it back */ }
            }
            await transaction.DisposeAsync();
        }
    }
}
